"""Extension objects, created unbound and initialised by ``create_app``."""

from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
import flask_smorest
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from .docs import ErrorOut
from .store import TokenStore


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
jwt = JWTManager()
api = Api()
# Errors are documented in the one envelope of API.md §1, not flask-smorest's.
api.ERROR_SCHEMA = ErrorOut
token_store = TokenStore()


class Blueprint(flask_smorest.Blueprint):
    # Login takes JSON or an OAuth2 form: one schema for both (docs.py lists
    # the form content type beside JSON in the document).
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/json",
    }
