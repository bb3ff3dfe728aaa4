"""A small local HTTP stand-in for the few DataHub GMS endpoints the server backend uses.

It is not DataHub: it keeps aspects in a dict, derives the two relationships the catalog asks for
(`TaggedWith` from globalTags, `MemberOf` from mlModelProperties.groups) the way GMS's relationship
annotations do, and records every request so tests can assert what the client sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


@dataclass
class StandIn:
    aspects: dict[str, dict[str, dict]] = field(default_factory=dict)  # urn -> aspect name -> JSON
    requests: list[Recorded] = field(default_factory=list)
    fail_writes: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def ingest(self, proposal: dict) -> None:
        value = json.loads(proposal["aspect"]["value"])
        with self.lock:
            self.aspects.setdefault(proposal["entityUrn"], {})[proposal["aspectName"]] = value

    def related(self, urn: str, relationship: str) -> list[str]:
        def targets(aspects: dict[str, dict]) -> list[str]:
            if relationship == "TaggedWith":
                return [t["tag"] for t in aspects.get("globalTags", {}).get("tags", [])]
            if relationship == "MemberOf":
                return list(aspects.get("mlModelProperties", {}).get("groups", []))
            return []

        with self.lock:
            return sorted(src for src, aspects in self.aspects.items() if urn in targets(aspects))


def _handler(state: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _reply(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self, body: dict | None) -> None:
            state.requests.append(Recorded(self.command, self.path, dict(self.headers), body))

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._record(None)
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if parts.path == "/config":
                return self._reply(200, {"noCode": "true", "versions": {"acryldata/datahub": {"version": "v1.2.0"}}})
            if parts.path.startswith("/entitiesV2/"):
                urn = unquote(parts.path[len("/entitiesV2/") :])
                wanted = query.get("aspects", ["List()"])[0][len("List(") : -1].split(",")
                stored = state.aspects.get(urn)
                if stored is None:
                    return self._reply(404, {"message": f"{urn} not found", "status": 404})
                found = {n: {"name": n, "value": v} for n, v in stored.items() if n in wanted}
                return self._reply(200, {"urn": urn, "aspects": found})
            if parts.path == "/openapi/relationships/v1/":
                assert query["direction"] == ["INCOMING"]
                urns = state.related(query["urn"][0], query["relationshipTypes"][0])
                start = int(query.get("start", ["0"])[0])
                page = urns[start:]
                entities = [{"urn": u, "relationshipType": query["relationshipTypes"][0]} for u in page]
                return self._reply(200, {"entities": entities, "count": len(page), "start": start, "total": len(urns)})
            return self._reply(404, {"message": f"stand-in has no {parts.path}"})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            self._record(body)
            if state.fail_writes:
                return self._reply(500, {"message": "stand-in told to fail writes", "status": 500})
            if self.path == "/aspects?action=ingestProposalBatch":
                for proposal in body["proposals"]:
                    state.ingest(proposal)
                return self._reply(200, {"value": []})
            if self.path == "/aspects?action=ingestProposal":
                state.ingest(body["proposal"])
                return self._reply(200, {"value": body["proposal"]["entityUrn"]})
            return self._reply(404, {"message": f"stand-in has no {self.path}"})

    return Handler


class running:
    """`with running() as standin:` serves on 127.0.0.1 on an ephemeral port, in a thread."""

    def __enter__(self) -> StandIn:
        self.state = StandIn()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.state.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
