"""The console: where people (not only OAuth clients) work, at ``/console``, after signing in at
``/sign-in``. Built on the API's services, policy engine and audit log: a page is never a
second path around a rule (see :mod:`api.console.auth` for how a role's console is built).
"""

from __future__ import annotations

from fastapi import FastAPI

from api.console import (
    account,
    admin,
    analyst,
    auth,
    data_manager,
    publication,
    routes,
    sso,
    staff,
    webhooks,
    whatif,
)


def install(app: FastAPI) -> None:
    """Add the sign-in pages and the console to ``app``."""
    app.router.routes.extend(routes.router.routes)
    app.router.routes.extend(sso.router.routes)
    app.router.routes.extend(analyst.router.routes)
    app.router.routes.extend(data_manager.router.routes)
    app.router.routes.extend(admin.router.routes)
    app.router.routes.extend(staff.router.routes)
    app.router.routes.extend(account.router.routes)
    app.router.routes.extend(webhooks.router.routes)
    app.router.routes.extend(whatif.router.routes)
    app.router.routes.extend(publication.router.routes)
    app.add_exception_handler(auth.SignInRequired, auth.redirect_to_sign_in)
