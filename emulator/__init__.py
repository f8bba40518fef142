"""A local stand-in for the Microsoft identity platform and Microsoft Graph mail; see :class:`Emulator`."""

from .server import Emulator

__all__ = ["Emulator"]
