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

# Entra's token answers (spec 2d) and their variants: seconds as text, plain scopes,
# another token type.
for path in fixtures(IDENTITY, "token-response-*.json"):
    put("entra_token_response", read(path))
for sample in [
    {"token_type": "bearer", "scope": "https%3A%2F%2Fgraph.microsoft.com%2FUser.Read.All%20offline_access",
     "expires_in": "3599", "ext_expires_in": "7199", "refresh_in": 1800, "access_token": "at", "refresh_token": "rt",
     "id_token": "a.b.c"},
    {"token_type": "pop", "access_token": "at"},
    {"token_type": "Bearer", "access_token": "at", "expires_in": 18446744073709551615, "scope": ""},
]:
    put("entra_token_response", json.dumps(sample).encode())

# Token-endpoint errors (spec 4a): two little-endian bytes of (status - 400), two of the
# Retry-After seconds, then the body.
def error_prefix(status, retry_after):
    return struct.pack("<HH", status - 400, retry_after)
for path in fixtures(IDENTITY, "token-error-*.json"):
    put("entra_error_response", error_prefix(400, 0) + read(path))
for status, retry_after, body in [
    (400, 0, {"error": "invalid_grant", "error_description": "AADSTS50173: The provided grant has expired.",
              "error_codes": [50173], "suberror": "bad_token", "claims": {"access_token": {"capolids": {"essential": True}}}}),
    (400, 0, {"error": "interaction_required", "error_codes": ["50076", 50079], "claims": "{\"access_token\":{}}"}),
    (400, 0, {"error": "invalid_request", "error_codes": [700016]}),
    (429, 30, {"error": "temporarily_unavailable"}),
    (503, 7200, {"error": "server_error", "trace_id": "t", "correlation_id": "c"}),
    (401, 0, {"error": "invalid_client", "error_codes": [7000215]}),
    (400, 0, {"error": "authorization_pending"}),
]:
    put("entra_error_response", error_prefix(status, retry_after) + json.dumps(body).encode())

# Device-code answers (spec 3): as documented, seconds as text, no message, huge values.
device = {"user_code": "ABCD-EFGH", "device_code": "GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8",
          "verification_uri": "https://microsoft.com/devicelogin", "expires_in": 900, "interval": 5,
          "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-EFGH to authenticate."}
put("entra_device_code", json.dumps(device).encode())
put("entra_device_code", json.dumps(dict(device, expires_in="900", interval=" 5 ")).encode())
put("entra_device_code", json.dumps({k: v for k, v in device.items() if k != "message"}).encode())
put("entra_device_code", json.dumps(dict(device, expires_in=18446744073709551615, interval=0)).encode())

# Id-token claims (spec 5a): the documented samples, and claims the target's client
# accepts at its clock (aud, iss, tid, oid, exp around 1_700_000_000), also as a token.
for path in fixtures(IDENTITY, "id-token-claims-*.json", "id-token-groups-overage-claims.json"):
    put("entra_id_token", read(path))
for path in fixtures(IDENTITY, "id-token-v*-sample.jwt"):
    put("entra_id_token", read(path).strip())
tid = "9122040d-6c67-4c5b-b112-36a304b66dad"
client = "6731de76-14a6-49ae-97bc-6eba6914391e"
accepted = {"ver": "2.0", "iss": "https://login.microsoftonline.com/%s/v2.0" % tid, "aud": client,
            "exp": 1_700_003_600, "iat": 1_700_000_000, "nbf": 1_700_000_000, "name": "Abe Lincoln",
            "preferred_username": "AbeLi@microsoft.com", "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": tid}
put("entra_id_token", json.dumps(accepted).encode())
put("entra_id_token", json.dumps(dict(accepted, aud=[client, "00000003-0000-0000-c000-000000000000"], azp=client)).encode())
put("entra_id_token", json.dumps(dict(accepted, nonce="123523")).encode())

# tenant-sim's query options: first byte 0 = $filter, 1 = $search, 2 = $orderby,
# 3 = a whole query string, 4 = a raw request line.
for text in ["accountEnabled eq true", "userType eq 'Guest' or (id eq 'abc')", "not(accountEnabled eq true)",
             "startswith(displayName,'O''Brien') and endswith(mail,'@contoso.com')", "id in ('x', 'abc', null, 1.5)",
             "displayName ne 'Oscar Ward'", "(a eq 1 or b eq 2) and not (c eq 3 and d eq 4)", "id ge '1'"]:
    put("sim_query", b"\x00" + text.encode())
for text in ['"displayName:wa" OR "displayName:zz"', '"displayName:ard" AND "mail:contoso"', "wa"]:
    put("sim_query", b"\x01" + text.encode())
for text in ["displayName", "userPrincipalName desc", "displayName asc", "mail"]:
    put("sim_query", b"\x02" + text.encode())
for text in ["$top=5&%24select=id,displayName&$skiptoken=abc&ConsistencyLevel=eventual",
             "$filter=startswith(displayName,'a')&$count=true&$orderby=displayName desc",
             "$search=%22displayName:wa%22&$top=999", "top=1000&select=&count=TRUE"]:
    put("sim_query", b"\x03" + text.encode())
for line in [b'GET /v1.0/users?$search="displayName:foo" HTTP/1.1',
             b"GET /v1.0/users?$filter=startsWith(displayName,\"a\") HTTP/1.1",
             b"POST /v1.0/$batch HTTP/1.0", b"GET / HTTP/2", b"GET /v1.0/users?x=\xc3\xa9<> HTTP/1.1"]:
    put("sim_query", b"\x04" + line)

# tenant-sim's tokens, minted for the target's tenant: first byte 0 = $skiptoken,
# 1 = $deltatoken, 2 = a delta round's skip cursor.
sim_tenant = "fa15d692-e9c7-4460-a743-29f2956fd429"
def sim_token(text):
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=")
for text in ["%s:users:0" % sim_tenant, "%s:users:100" % sim_tenant, "%s:groups:5" % sim_tenant]:
    put("sim_tokens", b"\x00" + sim_token(text))
for text in ["d|u|12|1700000000|*", "d|g|0|1700000000|displayName,members", "d|u|1|-5|"]:
    put("sim_tokens", b"\x01" + sim_token("%s|%s" % (sim_tenant, text)))
for text in ["s|u|-|40|0|3|0|*", "s|g|12|40|1|3|500|displayName,members", "s|g|-|1|0|0|0|id"]:
    put("sim_tokens", b"\x02" + sim_token("%s|%s" % (sim_tenant, text)))

# The web app's forms: first byte 0 = the sync-scope form, 1 = the sign-in form.
for body in ["csrf=t&mode=all&group=g1&skip_guests=on", "mode=groups&group=g3&group=g1&group=g3&group=&skip_disabled=on&skip_guests=on",
             "mode=groups&group=+g%201+&skip_disabled=yes", "mode=everyone", "group=g1"]:
    put("web_forms", b"\x00" + body.encode())
for body in ["csrf=t&email=admin%40contoso.com&password=p%40ss+word", "email=a&email=b", "password=%FF%FE"]:
    put("web_forms", b"\x01" + body.encode())
