"""A real S3 server on loopback for the object-store tests: moto's standalone server, in a thread."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest


@dataclass
class S3Server:
    endpoint: str
    # Called with (method, path) before the server handles each request: a test's tripwire.
    hooks: list[Callable[[str, str], None]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that aim boto/s3fs (and so bhds) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1"}

    def new_bucket(self) -> str:
        """A fresh, empty bucket; its name."""
        import boto3

        name = f"bhds-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=name)
        return name


def _hooked_server(hooks: list[Callable[[str, str], None]]):  # noqa: ANN202 - a ThreadedMotoServer
    """moto's threaded server with `hooks` run on every request before moto answers it."""
    from moto.moto_server import threaded_moto_server as threaded
    from werkzeug.serving import make_server

    class Hooked(threaded.ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = threaded.DomainDispatcherApplication(threaded.create_backend_app)

            def hooked(environ: dict, start_response: Callable) -> object:
                for hook in list(hooks):
                    hook(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
                return app(environ, start_response)

            self._server = make_server(self._ip_address, self._port, hooked, True, request_handler=threaded.MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return Hooked(ip_address="127.0.0.1", port=0, verbose=False)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("moto.server")
    hooks: list[Callable[[str, str], None]] = []
    server = _hooked_server(hooks)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}", hooks)
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the AWS variables set in this process; returns `s3://<bucket>`."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return f"s3://{s3_server.new_bucket()}"
