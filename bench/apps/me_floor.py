"""What GET /users/me cannot do without, in a bare view under the same gunicorn.

flask-jwt-extended's check of the token, one Redis MGET of its revocation keys
(built by authapi.revocation, so the floor reads exactly the keys authapi
writes), one ORM load of the user by primary key, the marshmallow dump, with
authapi's own settings, model and schema. None of authapi's hooks (request id,
host and body checks, security headers, metrics, request log). The best me can
do on this stack: reported beside me, not a target.
"""

import redis
from flask import Flask
from flask_jwt_extended import JWTManager, get_jwt, jwt_required

from authapi.extensions import db
from authapi.models import User
from authapi.revocation import session_key, user_key
from authapi.schemas import UserOut
from config import load_config

app = Flask(__name__)
app.config.from_object(load_config())
JWTManager(app)
db.init_app(app)
# A plain client rather than authapi's token store, whose wiring needs the
# whole app factory: the floor leaves out what it can.
store = redis.Redis.from_url(app.config["REDIS_URL"])
user_out = UserOut()


@app.get("/")
@jwt_required()
def me():
    claims = get_jwt()
    user_id = claims["sub"]
    mark, cutoff = store.mget([session_key(user_id, claims["sid"]), user_key(user_id)])
    if mark is not None or (cutoff is not None and claims["iat"] < int(cutoff)):
        return {"error": "revoked"}, 401
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or user.role != claims["role"]:
        return {"error": "revoked"}, 401
    return user_out.dump(user)
