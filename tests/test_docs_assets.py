"""/docs/assets (issue 13, finding 12): only the Swagger UI files our /docs page
loads are served; the rest of the package (its demo index.html, which fetches
a petstore document from the internet, among them) is a 404."""

import re
from pathlib import Path

import pytest
from swagger_ui_bundle import swagger_ui_path

from authapi import create_app

from .conftest import base_env

PREFIX = "/docs/assets/"
PAGE = ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")
# Everything else the package ships: its demo page, its own initializer,
# favicons, the other bundles.
OTHERS = sorted(path.name for path in Path(swagger_ui_path).iterdir()
                if path.is_file() and path.name not in {*PAGE, *(name + ".map" for name in PAGE)})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'docs.db'}"
    return create_app("testing", environ=base_env(url, None)).test_client()


def page_assets(client) -> list[str]:
    html = client.get("/docs").get_data(as_text=True)
    return [url[len(PREFIX):] for url in re.findall(r'(?:src|href)="([^"]+)"', html)
            if url.startswith(PREFIX)]


def test_the_assets_of_the_docs_page_are_served(client):
    names = page_assets(client)

    assert set(names) == set(PAGE)
    for name in names:
        response = client.get(PREFIX + name)
        assert response.status_code == 200, name
        # The source map each file names is served too, for the browser's tools.
        map_name = re.search(r"sourceMappingURL=([\w.-]+)", response.get_data(as_text=True))
        if map_name:
            assert client.get(PREFIX + map_name[1]).status_code == 200, map_name[1]


@pytest.mark.parametrize("name", OTHERS)
def test_other_files_of_the_package_are_not_found(client, name):
    response = client.get(PREFIX + name)

    assert response.status_code == 404, name
    assert response.get_json()["error"]["code"] == "not_found"


def test_swaggers_demo_page_is_not_served(client):
    response = client.get(PREFIX + "index.html")

    assert response.status_code == 404
    assert b"petstore" not in response.get_data()
