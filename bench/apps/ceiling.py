"""The bench's own stack limit: a bare Flask view under the same gunicorn."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(status="ok")
