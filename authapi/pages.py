"""The hosted pages the email links open (API.md §12): ``/verify`` and
``/reset``, registered while HOSTED_PAGES is on.

Following a link changes nothing, since mail scanners fetch links: the GET
shows a form holding the token, and only its POST acts, through the very
service functions of ``POST /auth/email/verify`` and ``POST
/auth/password/reset``, under their rate limits (one counter each:
ratelimit.COUNTED_AS). Every refusal goes through the API's one envelope
(errors.py) like any other, and is shown here as a page (``as_page``).

The pages load nothing but their own stylesheet, from /static: the
Content-Security-Policy allows no script, no remote source, no framing, and
forms posting only to this origin. The token travels in a hidden field, and
no-store and no-referrer (http.SECURITY_HEADERS) keep it out of caches and
Referer headers. There is no CSRF defence because there is nothing to
defend: the form carries its credential (the token) and no cookie is read,
so a forged post could only do what its sender could with curl.
"""

from flask import Blueprint, current_app, render_template, request
from webargs.flaskparser import use_args

from .extensions import read_only
from .schemas import LinkIn, ResetFormIn, VerifyFormIn
from .services import recovery

bp = Blueprint("pages", __name__)

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "style-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])
# How a page names the fields of a form in its messages.
FIELD_LABELS = {
    "token": "Link",
    "new_password": "New password",
    "new_password_confirm": "New password, again",
}


@bp.get("/verify")
@read_only
@use_args(LinkIn(), location="query")
def verify_form(link):
    return render_template("pages/verify.html", token=link["token"])


@bp.post("/verify")
@use_args(VerifyFormIn(), location="form")
def verify(form):
    user = recovery.verify_email(form["token"])
    return render_template("pages/verified.html", email=user.email)


@bp.get("/reset")
@read_only
@use_args(LinkIn(), location="query")
def reset_form(link):
    return render_reset_form(link["token"])


@bp.post("/reset")
@use_args(ResetFormIn(), location="form")
def reset(form):
    recovery.reset_password(form["token"], form["new_password"])
    return render_template("pages/reset_done.html")


def render_reset_form(token: str, problems: dict | None = None) -> str:
    return render_template(
        "pages/reset.html", token=token, problems=problems or {}, labels=FIELD_LABELS,
        min_length=current_app.config["PASSWORD_MIN_LENGTH"],
    )


@bp.after_request
def as_page(response):
    """Every answer of these routes is a page under the policy: a refusal
    (the envelope errors.py built, its status and headers kept, Retry-After
    included) becomes a page saying why, with the API's own messages."""
    if response.status_code >= 400 and response.is_json:
        error = response.get_json()["error"]
        details = error.get("details") or {}
        if request.endpoint == "pages.reset" and response.status_code == 422 and "token" not in details:
            # A weak or mismatched password: the form again, the link still good.
            page = render_reset_form(request.form.get("token", ""), details)
        else:
            page = render_template("pages/error.html", status=response.status_code, error=error,
                                   details=details, labels=FIELD_LABELS)
        response.set_data(page)
        response.mimetype = "text/html"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
