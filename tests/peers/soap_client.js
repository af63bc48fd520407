// A SOAP client nobody here wrote: node `soap`, built from the real Salesforce partner WSDL,
// calling query, create (sObjects with fields) and describeSObjects through oauth-egress with the
// user's email in SessionHeader/sessionId.
//
// Prints one JSON object: per call what `soap` parsed, the sha256 of the raw answer it received
// and of the answer the upstream sent; or, with --expect-fault, the fault it reported.
// Usage: node soap_client.js WSDL PROXY_URL UPSTREAM_URL USER [--expect-fault]
'use strict';
const crypto = require('crypto');
const soap = require('soap');

const [wsdl, proxy, upstream, user] = process.argv.slice(2, 6);
const expectFault = process.argv.includes('--expect-fault');
const sha = (text) => crypto.createHash('sha256').update(Buffer.from(text, 'utf8')).digest('hex');

async function upstreamSha() {
  const last = await (await fetch(upstream + '/_last')).json();
  return crypto.createHash('sha256').update(Buffer.from(last.body, 'base64')).digest('hex');
}

async function main() {
  const client = await soap.createClientAsync(wsdl, { endpoint: proxy + '/services/Soap/u/58.0' });
  client.addSoapHeader({ SessionHeader: { sessionId: user } }, '', 'tns', 'urn:partner.soap.sforce.com');
  const out = {};
  if (expectFault) {
    try {
      await client.queryAsync({ queryString: 'SELECT Id FROM Account' });
      out.fault = null;
    } catch (e) {
      const fault = e.root && e.root.Envelope && e.root.Envelope.Body && e.root.Envelope.Body.Fault;
      out.fault = fault ? { code: String(fault.faultcode), message: String(fault.faultstring) } : { error: String(e) };
    }
    console.log(JSON.stringify(out));
    return;
  }
  const [query, queryRaw] = await client.queryAsync({ queryString: 'SELECT Id, Name FROM Account' });
  out.query = { size: Number(query.result.size), done: String(query.result.done), raw: sha(queryRaw), upstream: await upstreamSha() };

  const sObjects = [
    { attributes: { 'xsi:type': 'ens:sObject', 'xmlns:ens': 'urn:sobject.partner.soap.sforce.com' },
      'ens:type': 'Account', 'ens:Name': 'Acme & Sons', 'ens:Industry': 'Manufacturing' },
    { attributes: { 'xsi:type': 'ens:sObject', 'xmlns:ens': 'urn:sobject.partner.soap.sforce.com' },
      'ens:type': 'Contact', 'ens:LastName': 'Lovelace', 'ens:Email': 'ada@example.com' },
  ];
  const [created, createdRaw] = await client.createAsync({ sObjects });
  const results = [].concat(created.result);
  out.create = { ids: results.map((r) => r.id), success: results.map((r) => String(r.success)), raw: sha(createdRaw), upstream: await upstreamSha() };

  const [described, describedRaw] = await client.describeSObjectsAsync({ sObjectType: ['Account', 'Contact'] });
  out.describeSObjects = { names: [].concat(described.result).map((d) => d.name), raw: sha(describedRaw), upstream: await upstreamSha() };
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
