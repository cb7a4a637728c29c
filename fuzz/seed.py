#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the Microsoft samples the tests
keep (crates/*/tests/fixtures, see their SOURCES.md) and from the tests' inline samples.
Run from anywhere: python3 fuzz/seed.py. Existing seeds (and kept crash inputs) stay."""
import base64, glob, hashlib, json, os, struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPH = os.path.join(ROOT, "crates/graph-client/tests/fixtures")
SIM_GRAPH = os.path.join(ROOT, "crates/tenant-sim/tests/fixtures/graph")
IDENTITY = os.path.join(ROOT, "crates/entra-auth/tests/fixtures/identity")
CORPUS = os.path.join(ROOT, "fuzz/corpus")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def put(target, data, name=None):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    name = name or "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def fixtures(folder, *patterns):
    out = []
    for pattern in patterns:
        out += sorted(glob.glob(os.path.join(folder, pattern)))
    return out


# Pages of users, groups, directory objects.
for path in fixtures(GRAPH, "users-*.json", "user-get*.json", "me-get.json", "paging-nextlink.json"):
    put("graph_users_page", read(path))
for path in fixtures(GRAPH, "groups-*.json", "group-get*.json"):
    put("graph_groups_page", read(path))
for path in fixtures(GRAPH, "group-members*.json", "group-transitive-members*.json",
                     "user-memberof*.json", "user-manager.json", "user-expand-manager*.json"):
    put("graph_directory_objects_page", read(path))

# Delta rounds: first byte 0 = users, 1 = groups; pages separated by NUL.
users_delta = fixtures(GRAPH, "users-delta-*.json")
groups_delta = fixtures(GRAPH, "groups-delta-*.json")
for path in users_delta:
    put("graph_delta_page", b"\x00" + read(path))
for path in groups_delta:
    put("graph_delta_page", b"\x01" + read(path))
for kind, names in [
    (b"\x00", ["users-delta-initial.json", "users-delta-next.json", "users-delta-final.json"]),
    (b"\x00", ["users-delta-initial.json", "users-delta-removed.json"]),
    (b"\x01", ["groups-delta-initial.json", "groups-delta-next.json", "groups-delta-final.json"]),
    (b"\x01", ["groups-delta-large-group-page1.json", "groups-delta-large-group-page2.json"]),
    (b"\x01", ["groups-delta-large-group-page1.json", "groups-delta-members-removed.json"]),
]:
    parts = [read(os.path.join(GRAPH, n)) for n in names if os.path.exists(os.path.join(GRAPH, n))]
    put("graph_delta_page", kind + b"\x00".join(parts))

# $batch answers.
for path in fixtures(GRAPH, "batch-response.json") + fixtures(SIM_GRAPH, "batch-response.json"):
    put("graph_batch_response", read(path))
challenge = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
             'error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0="')
put("graph_batch_response", json.dumps({"responses": [
    {"id": "0", "status": 200, "headers": {"Content-Type": "application/json"},
     "body": {"value": [{"@odata.type": "#microsoft.graph.user", "id": "u1", "displayName": "Adele"}],
              "@odata.nextLink": "https://graph.microsoft.com/v1.0/groups/g1/members?$skiptoken=x"}},
    {"id": "1", "status": 429, "headers": {"Retry-After": "3"}, "body": {"error": {"code": "TooManyRequests"}}},
    {"id": "2", "status": 503, "headers": {"retry-after": 2}, "body": None},
    {"id": "3", "status": 401, "headers": {"WWW-Authenticate": [challenge]}, "body": {"error": {"code": "InvalidAuthenticationToken"}}},
    {"id": "4", "status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "innerError": {"request-id": "r"}}}},
    {"id": "5", "status": 410, "headers": {"Location": "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=t"}, "body": {}},
]}).encode())

# Graph error bodies: two little-endian bytes of (status - 200), then the body.
def status_prefix(status):
    return struct.pack("<H", status - 200)
for path in fixtures(GRAPH, "error-*.json"):
    name = os.path.basename(path)
    status = 429 if "429" in name else 501 if "501" in name else 400
    put("graph_error_body", status_prefix(status) + read(path))
for status, body in [(410, b'{"error":{"code":"resyncRequired","message":"Resync required."}}'),
                     (400, b'{"error":{"code":"syncStateNotFound","innererror":{"code":"x","requestId":"r","clientRequestId":"c","date":"d"}}}'),
                     (404, b''), (500, b'<html>oops</html>'), (403, b'{"error":{"code":12345,"message":null}}')]:
    put("graph_error_body", status_prefix(status) + body)

# Retry-After: eight clock bytes, then the value.
clock = struct.pack("<II", 1_445_412_480, 120)
for value in [b"120", b"0", b"1.5", b"  3  ", b"Wed, 21 Oct 2015 07:28:00 GMT", b"Wednesday, 21-Oct-15 07:28:00 GMT",
              b"Wed Oct 21 07:28:00 2015", b"-1", b"1e9", b"NaN", b"86401"]:
    put("retry_after", clock + value)

# Claims challenges: first byte 0 = 401, 2 = 403; one header value per line.
b64 = "eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0="
for status, values in [
    (0, [challenge]),
    (2, ['Bearer error="insufficient_claims", claims="%s"' % b64]),
    (0, ['Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"', challenge]),
    (0, ['Negotiate abc==, Bearer error="insufficient_claims", claims="%s", PoP nonce="abc"' % b64]),
    (0, [r'Bearer realm="a \"quoted\", realm\\", error="insufficient_\claims", claims="{}"']),
    (0, ['Bearer error="insufficient_claims", claims="{\\"access_token\\":{}}"']),
    (0, ['Bearer error=insufficient_claims, claims=%s' % b64.rstrip("=")]),
    (0, ['Bearer error="insufficient_claims", claims="eyJh+-_/"']),
    (0, ['bearer ERROR="insufficient_claims", Claims="%s"' % base64.urlsafe_b64encode(b'{"id_token":{"acrs":{"essential":true,"value":"c1"}}}').decode()]),
]:
    put("claims_challenge", bytes([status]) + "\n".join(values).encode())

# Callbacks: the documented redirects (their query part, and as URLs), form_post bodies.
for path in fixtures(IDENTITY, "*redirect.txt", "oidc-signin-formpost-*.txt"):
    text = read(path).decode("utf-8", "replace")
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    if lines and lines[0].startswith(("GET ", "POST ")):
        first = lines[0].split(" ", 1)[1]
        body = "".join(lines[1:])
        url = first + body if first.endswith("?") or first.endswith("#") else first
        put("entra_callback", url.encode())
        query = url.split("?", 1)[1] if "?" in url else url.split("#", 1)[-1]
        put("entra_callback", query.encode())
        if lines[0].startswith("POST "):
            put("entra_callback", "".join(l for l in lines[1:] if "=" in l).encode())
    put("entra_callback", text.encode())
for sample in ["code=abc&state=xyz", "?error=access_denied&error_description=AADSTS65004%3A+User+declined&state=s",
               "admin_consent=True&tenant=fa15d692-e9c7-4460-a743-29f2956fd429&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&state=12345",
               "http://localhost/callback#code=c&state=s", "code=a&code=b", "state=%FF%FE&code="]:
    put("entra_callback", sample.encode())

# Structured targets read their input through `arbitrary`: a few byte strings to start from.
for target in ["store_ciphertext", "store_row"]:
    for i, seed in enumerate([b"\x00" * 64, bytes(range(256)), b"k2\x00" + b"\x01" * 60 + b"\xff" * 32]):
        put(target, seed, "seed-%d" % i)
