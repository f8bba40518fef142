"""Consent and sign-in outcomes shown to people: a page for browsers, JSON for API clients."""

from __future__ import annotations

from flask import jsonify, render_template

from app.records.consent import ConsentProblem
from app.web.errors import wants_json


def render_problem(problem: ConsentProblem, status: int, *, record_id: int | None = None):
    """A consent outcome as HTML for browsers or JSON for API clients."""
    if wants_json():
        body = {"code": problem.code, "title": problem.title, "what_happened": problem.what_happened,
                "what_next": problem.what_next}
        rv = jsonify(body if problem.ok else {"error": {"code": problem.code, "message": problem.what_happened,
                                                        **body}})
        return rv, status
    return render_template("problem.html", problem=problem, record_id=record_id), status
