"""A small request-handling loop with a leak, for the heap profiler's worked example
(docs/PROFILE.md):

    pyalloc run --profile heap.collapsed examples/profile/leaky_service.py
    pyalloc flamegraph heap.collapsed heap.svg

Each request parses a JSON body, renders a response, records an audit entry (the log keeps the
last 1,000) and updates its user's session. The sessions are meant to be one per user, but they
are keyed by the request number: one more per request, never dropped.
"""
import json

AUDIT = []
SESSIONS = {}


def parse(body):
    return json.loads(body)


def render(req):
    rows = "".join("<tr><td>%s</td><td>%d</td></tr>" % (k, v) for k, v in req["items"].items())
    return "<table>%s</table>" % rows


def audit(req, response):
    AUDIT.append({"user": req["user"], "size": len(response), "copy": response.encode()})
    if len(AUDIT) > 1000:
        del AUDIT[:-1000]


def session(req):
    SESSIONS[req["n"]] = {"user": req["user"], "prefs": list(range(20))}   # bug: req["user"]


def handle(n):
    body = json.dumps({"user": n % 977, "n": n, "items": {"item%d" % i: i * n for i in range(40)}})
    req = parse(body)
    response = render(req)
    session(req)
    audit(req, response)
    return len(response)


def main():
    total = 0
    for n in range(30000):
        total += handle(n)
    print("served", total, "bytes;", len(AUDIT), "audit entries,", len(SESSIONS), "sessions")


if __name__ == "__main__":
    main()
