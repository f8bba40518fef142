"""What a request reaches: the process's :class:`~app.records.services.Services`, and through it this
thread's database. The app factory installs the services once; this is the only place that reads them."""

from __future__ import annotations

from flask import Flask, current_app
from sqlite_utils import Database

from app.records.services import Services

_KEY = "services"


def install(app: Flask, services: Services) -> None:
    app.extensions[_KEY] = services


def services_of(app: Flask) -> Services:
    return app.extensions[_KEY]


def current_services() -> Services:
    return services_of(current_app)


def get_db() -> Database:
    """This thread's connection to the application's database."""
    return current_services().db()
