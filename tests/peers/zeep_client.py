"""A SOAP client nobody here wrote: zeep, built from the real Salesforce partner WSDL, calling
query, create (sObjects with fields) and describeSObjects through oauth-egress with the user's
email in SessionHeader/sessionId, as an internal app would.

Prints one JSON object: per call what zeep parsed, the sha256 of the raw answer zeep received
and of the answer the upstream sent; or, with --expect-fault, the fault zeep raised.
Usage: zeep_client.py WSDL PROXY_URL UPSTREAM_URL USER [--expect-fault]
"""

import hashlib
import json
import sys

import requests
import zeep
from lxml import etree
from zeep.transports import Transport

wsdl, proxy, upstream, user = sys.argv[1:5]
expect_fault = "--expect-fault" in sys.argv


class Recording(Transport):
    """Keeps the raw bytes of the last answer."""

    last = b""

    def post(self, address, message, headers):
        response = super().post(address, message, headers)
        Recording.last = response.content
        return response


client = zeep.Client(wsdl, transport=Recording())
service = client.create_service("{urn:partner.soap.sforce.com}SoapBinding", proxy + "/services/Soap/u/58.0")
session = {"SessionHeader": {"sessionId": user}}


def sha(b):
    return hashlib.sha256(b).hexdigest()


def upstream_sha():
    import base64

    last = requests.get(upstream + "/_last").json()
    return sha(base64.b64decode(last["body"]))


out = {}
if expect_fault:
    try:
        service.query(queryString="SELECT Id FROM Account", _soapheaders=session)
        out["fault"] = None
    except zeep.exceptions.Fault as f:
        out["fault"] = {"code": str(f.code), "message": f.message}
    print(json.dumps(out))
    sys.exit(0)

def result(answer):
    # The answers carry a LimitInfoHeader, so zeep gives header and body.
    return answer["body"]["result"]


queried = result(service.query(queryString="SELECT Id, Name FROM Account", _soapheaders=session))
out["query"] = {
    "size": queried["size"],
    "done": queried["done"],
    "raw": sha(Recording.last),
    "upstream": upstream_sha(),
}

sobject = client.get_type("{urn:sobject.partner.soap.sforce.com}sObject")
ns = "urn:sobject.partner.soap.sforce.com"


def field(name, value):
    e = etree.Element(etree.QName(ns, name))
    e.text = value
    return e


records = [
    sobject(type="Account", _value_1=[field("Name", "Acme & Sons"), field("Industry", "Manufacturing")]),
    sobject(type="Contact", _value_1=[field("LastName", "Lovelace"), field("Email", "ada@example.com")]),
]
saved = result(service.create(sObjects=records, _soapheaders=session))
out["create"] = {
    "ids": [r["id"] for r in saved],
    "success": [r["success"] for r in saved],
    "raw": sha(Recording.last),
    "upstream": upstream_sha(),
}

described = result(service.describeSObjects(sObjectType=["Account", "Contact"], _soapheaders=session))
out["describeSObjects"] = {
    "names": [d["name"] for d in described],
    "raw": sha(Recording.last),
    "upstream": upstream_sha(),
}
print(json.dumps(out))
