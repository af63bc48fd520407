"""Peers for oauth-egress's peer suite, none of it oauth-egress's code:

- a token endpoint: Authlib's RFC 7523 JWTBearerGrant (an independent JOSE stack checks the
  assertion's signature, iss, aud, exp; we add sub, jti required and jti never reused), answering
  like Salesforce (no expires_in, instance_url, HTTP 400 JSON invalid_grant / invalid_client_id)
  or like Okta (--mode okta: expires_in);
- an upstream that answers the Salesforce partner API's query, create and describeSObjects over
  SOAP and a REST resource, only for sessions the token endpoint issued (else INVALID_SESSION_ID
  on HTTP 500, or 401), recording each answer's bytes.

Prints `READY <token port> <upstream port>` on stdout once both listen.
Usage: servers.py --public-key PEM --client-id ID --audience AUD [--mode salesforce|okta]
                  [--refuse SUBJECT]...
"""

import argparse
import base64
import json
import secrets
import threading

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidGrantError, OAuth2Error
from authlib.oauth2.rfc7523 import JWTBearerGrant
from flask import Flask, Response, request
from joserfc.jwk import RSAKey
from lxml import etree
from werkzeug.serving import make_server

ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SF = "urn:partner.soap.sforce.com"

parser = argparse.ArgumentParser()
parser.add_argument("--public-key", required=True)
parser.add_argument("--client-id", required=True)
parser.add_argument("--audience", required=True)
parser.add_argument("--mode", choices=["salesforce", "okta"], default="salesforce")
parser.add_argument("--refuse", action="append", default=[])
args = parser.parse_args()

with open(args.public_key, "rb") as f:
    PUBLIC_KEY = RSAKey.import_key(f.read())

lock = threading.Lock()
sessions = {}  # access token -> subject
seen_jti = set()
counts = {"issued": 0, "refused": 0}
last = {}  # what the upstream last answered, for byte-for-byte comparison
upstream_url = ""


class InvalidClientId(OAuth2Error):
    error = "invalid_client_id"
    status_code = 400


class Client:
    client_id = args.client_id

    def check_grant_type(self, grant_type):
        return grant_type == JWTBearerGrant.GRANT_TYPE

    def get_allowed_scope(self, scope):
        return scope or ""


class Grant(JWTBearerGrant):
    CLAIMS_OPTIONS = {
        "iss": {"essential": True},
        "sub": {"essential": True},
        "aud": {"essential": True},
        "exp": {"essential": True},
        "jti": {"essential": True},
    }

    def get_audiences(self):
        return [args.audience]

    def resolve_issuer_client(self, issuer):
        if issuer != args.client_id:
            raise InvalidClientId(description="client identifier invalid")
        return Client()

    def resolve_client_public_key(self, client):
        return PUBLIC_KEY

    def process_assertion_claims(self, assertion):
        claims = super().process_assertion_claims(assertion)
        with lock:
            if claims["jti"] in seen_jti:
                raise InvalidGrantError(description="assertion replayed (jti seen before)")
            seen_jti.add(claims["jti"])
        return claims

    def authenticate_user(self, subject):
        return subject

    def has_granted_permission(self, client, user):
        if user in args.refuse:
            with lock:
                counts["refused"] += 1
            raise InvalidGrantError(description="user hasn't approved this consumer")
        return True


def save_token(token, req):
    with lock:
        sessions[token["access_token"]] = req.user
        counts["issued"] += 1
    if args.mode == "salesforce":
        # Salesforce: no expires_in; the org's instance and an identity URL instead.
        token.pop("expires_in", None)
        token.pop("refresh_token", None)
        token["instance_url"] = upstream_url
        token["id"] = upstream_url + "/id/00D000000000001/005000000000001"
        token["issued_at"] = "1763800000000"


def generate_token(grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
    token = {"token_type": "Bearer", "access_token": "00D" + secrets.token_urlsafe(32)}
    token["expires_in"] = 900
    if scope:
        token["scope"] = scope
    return token


idp = Flask("idp")
server = AuthorizationServer(idp, query_client=lambda cid: Client() if cid == args.client_id else None, save_token=save_token)
server.register_grant(Grant)
server.register_token_generator(JWTBearerGrant.GRANT_TYPE, generate_token)


@idp.post("/services/oauth2/token")
def token():
    return server.create_token_response()


@idp.get("/_counts")
def get_counts():
    with lock:
        return dict(counts)


up = Flask("upstream")


def fault(code, message):
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENV}" '
        f'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring>"
        f'<detail><sf:UnexpectedErrorFault xsi:type="sf:UnexpectedErrorFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{message}</sf:exceptionMessage></sf:UnexpectedErrorFault></detail>"
        f"</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return body


# DescribeSObjectResult's required elements, in the partner WSDL's order ("" = xsi:nil).
DESCRIBE = [
    ("activateable", "false"), ("associateEntityType", ""), ("associateParentEntity", ""),
    ("compactLayoutable", "true"), ("createable", "true"), ("custom", "false"), ("customSetting", "false"),
    ("deepCloneable", "false"), ("defaultImplementation", ""), ("deletable", "true"),
    ("deprecatedAndHidden", "false"), ("feedEnabled", "true"), ("hasSubtypes", "false"), ("idEnabled", "true"),
    ("implementedBy", ""), ("implementsInterfaces", ""), ("isInterface", "false"), ("isSubtype", "false"),
    ("keyPrefix", "001"), ("label", None), ("labelPlural", None), ("layoutable", "true"), ("mergeable", "true"),
    ("mruEnabled", "true"), ("name", None), ("networkScopeFieldName", ""), ("queryable", "true"),
    ("replicateable", "true"), ("retrieveable", "true"), ("searchable", "true"), ("undeletable", "true"),
    ("updateable", "true"), ("urlDetail", ""), ("urlEdit", ""), ("urlNew", ""),
]


def describe_result(name):
    parts = []
    for element, value in DESCRIBE:
        if value is None:
            value = {"label": name, "labelPlural": name + "s", "name": name}[element]
        if value == "":
            parts.append(f'<{element} xsi:nil="true"/>')
        else:
            parts.append(f"<{element}>{value}</{element}>")
    return "<result>" + "".join(parts) + "</result>"


def answer(operation, element):
    if operation == "query":
        soql = element.findtext(f"{{{SF}}}queryString")
        inner = (
            "<queryResponse><result xsi:type=\"QueryResult\"><done>true</done><queryLocator xsi:nil=\"true\"/>"
            "<records xsi:type=\"sf:sObject\"><sf:type>Account</sf:type><sf:Id>001000000000001AAA</sf:Id>"
            "<sf:Id>001000000000001AAA</sf:Id><sf:Name>Acme &amp; Sons</sf:Name></records>"
            f"<size>1</size></result></queryResponse>"
        )
        assert soql
    elif operation == "create":
        n = len(element.findall(f"{{{SF}}}sObjects"))
        results = "".join(f"<result><id>001000000000{i:03d}AAA</id><success>true</success></result>" for i in range(n))
        inner = f"<createResponse>{results}</createResponse>"
    elif operation == "describeSObjects":
        names = [e.text for e in element.findall(f"{{{SF}}}sObjectType")]
        results = "".join(describe_result(n) for n in names)
        inner = f"<describeSObjectsResponse>{results}</describeSObjectsResponse>"
    else:
        return None
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{ENV}" xmlns="{SF}" '
        f'xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Header><LimitInfoHeader><limitInfo><current>1</current><limit>15000</limit><type>API REQUESTS</type>"
        f"</limitInfo></LimitInfoHeader></soapenv:Header><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    )


def record(status, body, subject):
    with lock:
        last["status"] = status
        last["body"] = base64.b64encode(body.encode()).decode()
        last["subject"] = subject


@up.post("/services/Soap/u/58.0")
def soap():
    doc = etree.fromstring(request.get_data())
    session = doc.findtext(f"{{{ENV}}}Header/{{{SF}}}SessionHeader/{{{SF}}}sessionId")
    with lock:
        subject = sessions.get(session)
    if subject is None:
        body = fault("INVALID_SESSION_ID", "Invalid Session ID found in SessionHeader: Illegal Session")
        record(500, body, None)
        return Response(body, 500, content_type="text/xml; charset=utf-8")
    element = doc.find(f"{{{ENV}}}Body")[0]
    operation = etree.QName(element).localname
    body = answer(operation, element)
    if body is None:
        body = fault("UNKNOWN_EXCEPTION", f"not served here: {operation}")
        record(500, body, subject)
        return Response(body, 500, content_type="text/xml; charset=utf-8")
    record(200, body, subject)
    return Response(body, 200, content_type="text/xml; charset=utf-8")


@up.get("/services/data/v58.0/sobjects/Account/<ident>")
def rest(ident):
    auth = request.headers.get("Authorization", "")
    with lock:
        subject = sessions.get(auth.removeprefix("Bearer "))
    if subject is None:
        body = '[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]'
        record(401, body, None)
        return Response(body, 401, content_type="application/json")
    body = json.dumps({"Id": ident, "Name": "Acme & Sons", "Owner": subject})
    record(200, body, subject)
    return Response(body, 200, content_type="application/json")


@up.post("/_kill")
def kill():
    with lock:
        sessions.clear()
    return "killed\n"


@up.get("/_last")
def get_last():
    with lock:
        return dict(last)


idp_server = make_server("127.0.0.1", 0, idp, threaded=True)
up_server = make_server("127.0.0.1", 0, up, threaded=True)
upstream_url = f"http://127.0.0.1:{up_server.server_port}"
threading.Thread(target=up_server.serve_forever, daemon=True).start()
print(f"READY {idp_server.server_port} {up_server.server_port}", flush=True)
idp_server.serve_forever()
