// EST-coaps interop client (RFC 9148) on a DTLS 1.2 + CoAP stack that shares
// no code with libcoap: werift-dtls (DTLS) and coap-packet (CoAP codec). The
// CoAP message layer (message IDs, tokens, CON retransmission, separate
// responses, Block1/Block2) is written here, after RFC 7252 and RFC 7959.
//
// usage: node client.mjs --host H --port P --pki DIR --out DIR --local-port LP
//   DIR (--out) holds the CSRs made by the test script (sen-rtag.csr,
//   sen-token.csr, dup-block.csr, dup-final.csr, skg.csr) and gets the
//   answers (crts.p7, sen-*.p7, skg.mp, ...).
// Each step prints "STEP <n> <name> OK ..." or "STEP <n> <name> FAIL ...";
// the exit status is the number of failed steps (0 = all passed).
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate, createPrivateKey, randomBytes, randomInt } from 'node:crypto';
// werift-dtls 0.5.8's package.json names a lib/index.js it does not ship;
// the DTLS entry point is lib/dtls/src/index.js.
import werift from 'werift-dtls/lib/dtls/src/index.js';
import coap from 'coap-packet';

const { DtlsClient } = werift;

// ---------------------------------------------------------------- arguments
const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
}
for (const k of ['host', 'port', 'pki', 'out', 'local-port']) {
  if (!args[k]) {
    console.error(`missing --${k}`);
    process.exit(100);
  }
}
const HOST = args.host;
const PORT = Number(args.port);
const OUT = args.out;
const LOCAL_PORT = Number(args['local-port']);

// RFC 7252 §4.8 transmission parameters.
const ACK_TIMEOUT = 2000;
const ACK_RANDOM_FACTOR = 1.5;
const MAX_RETRANSMIT = 4;
const HANDSHAKE_TIMEOUT = 15000;
const SEPARATE_TIMEOUT = 30000; // bounded wait for a separate response

const pemBlock = (text, what) => {
  const m = text.match(new RegExp(`-----BEGIN ${what}-----[\\s\\S]+?-----END ${what}-----`));
  if (!m) throw new Error(`no ${what} PEM block`);
  return m[0] + '\n';
};
const readPki = (name) => fs.readFileSync(path.join(args.pki, name), 'latin1');
// certtool writes a text dump before the PEM; werift wants PKCS#8.
const CLIENT_CERT = pemBlock(readPki('idevid.crt'), 'CERTIFICATE');
const CLIENT_KEY = createPrivateKey(pemBlock(readPki('idevid.key'), '[A-Z ]*PRIVATE KEY'))
  .export({ type: 'pkcs8', format: 'pem' })
  .toString();
const CA = new X509Certificate(pemBlock(readPki('ca.crt'), 'CERTIFICATE'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const withTimeout = (p, ms, what) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e) => { clearTimeout(t); reject(e); });
  });

// ---------------------------------------------------------------- CoAP bits
const uintBuf = (n) => {
  // RFC 7252 §3.2 uint: minimal big-endian, 0 is empty.
  const b = [];
  while (n > 0) { b.unshift(n & 0xff); n = Math.floor(n / 256); }
  return Buffer.from(b);
};
const bufUint = (b) => { let n = 0; for (const x of b) n = n * 256 + x; return n; };
const block = (num, more, szx) => uintBuf(num * 16 + (more ? 8 : 0) + szx);
const parseBlock = (b) => { const v = bufUint(b); return { num: Math.floor(v / 16), more: !!(v & 8), szx: v & 7 }; };
const optName = { 11: 'Uri-Path', 12: 'Content-Format', 15: 'Uri-Query', 17: 'Accept', 23: 'Block2', 27: 'Block1', 28: 'Size2', 60: 'Size1', 292: 'Request-Tag' };
const getOpt = (p, name) => p.options.find((o) => o.name === name);
const getOptAll = (p, name) => p.options.filter((o) => o.name === name);
const cfOf = (p) => { const o = getOpt(p, 'Content-Format'); return o ? bufUint(o.value) : undefined; };
const typeOf = (p) => (p.confirmable ? 'CON' : p.ack ? 'ACK' : p.reset ? 'RST' : 'NON');

// A PDU dump in the style of libcoap's -v 6 lines, plus the raw bytes.
function fmt(raw) {
  let p;
  try { p = coap.parse(raw); } catch (e) { return `unparsable (${e.message}) ${raw.toString('hex')}`; }
  const opts = p.options.map((o) => {
    const n = optName[o.name] || o.name;
    if (n === 'Block1' || n === 'Block2') { const b = parseBlock(o.value); return `${n}:${b.num}/${b.more ? 'M' : '_'}/${16 << b.szx}`; }
    if (['Content-Format', 'Accept', 'Size1', 'Size2'].includes(n)) return `${n}:${bufUint(o.value)}`;
    if (n === 'Uri-Path' || n === 'Uri-Query') return `${n}:${o.value.toString()}`;
    return `${n}:0x${o.value.toString('hex')}`;
  });
  return `t:${typeOf(p)} c:${p.code} i:${p.messageId.toString(16).padStart(4, '0')} {${p.token.toString('hex')}} [ ${opts.join(', ')} ]` +
    (p.payload.length ? ` :: ${p.payload.length} bytes` : '') + ` raw=${raw.toString('hex').slice(0, 160)}${raw.length > 80 ? '...' : ''}`;
}

// ---------------------------------------------------------------- a session
// One DTLS session from a UDP socket bound to 127.0.0.1:localPort (0 = any),
// with the CoAP message layer on top.
class Session {
  constructor(name, localPort = 0, creds = { cert: CLIENT_CERT, key: CLIENT_KEY }) {
    this.name = name;
    this.localPort = localPort;
    this.creds = creds;
    this.mid = randomInt(0x10000);
    this.pendingMid = new Map(); // MID -> exchange
    this.pendingTok = new Map(); // token hex -> exchange
    this.trace = []; // every PDU in and out: {dir, t, raw}
    this.closed = false;
  }

  async open() {
    this.sock = dgram.createSocket('udp4');
    await new Promise((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind({ address: '127.0.0.1', port: this.localPort }, () => { this.sock.off('error', reject); resolve(); });
    });
    this.sock.on('error', (e) => console.log(`# ${this.name}: socket error ${e.message}`));
    this.localPort = this.sock.address().port;
    const sock = this.sock;
    const self = this;
    // The werift Transport interface: send, onData, close.
    this.transport = {
      type: 'udp',
      closed: false,
      onData: () => {},
      send: async (data) => { if (!this.transport.closed) sock.send(data, PORT, HOST); },
      close: () => self.drop(),
    };
    sock.on('message', (data, rinfo) => {
      if (rinfo.address !== HOST || rinfo.port !== PORT) return;
      this.transport.onData(data, [rinfo.address, rinfo.port]);
    });
    this.dtls = new DtlsClient({
      transport: this.transport,
      cert: this.creds.cert,
      key: this.creds.key,
      // werift loads cert and key only when this is given too.
      signatureHash: { hash: werift.HashAlgorithm.sha256_4, signature: werift.SignatureAlgorithm.ecdsa_3 },
      certificateRequest: true,
      extendedMasterSecret: true,
    });
    this.dtls.onData.subscribe((buf) => this.onPdu(Buffer.from(buf)));
    this.dtls.onError.subscribe((e) => console.log(`# ${this.name}: dtls error ${e}`));
    this.dtls.onClose.subscribe(() => console.log(`# ${this.name}: dtls alert from the server`));
    const connected = new Promise((r) => this.dtls.onConnect.subscribe(() => r()));
    const t0 = Date.now();
    this.dtls.connect().catch((e) => console.log(`# ${this.name}: handshake flight error ${e.message}`));
    await withTimeout(connected, HANDSHAKE_TIMEOUT, `${this.name}: DTLS handshake`);
    this.handshakeMs = Date.now() - t0;
    // werift 0.5.8 sends its Finished with epoch 1 sequence number N, then
    // restarts the counter at 0, so the Nth record after it would repeat N
    // and be dropped as a replay (RFC 6347 §4.1.2.6): skip past it.
    this.dtls.dtls.recordSequenceNumber += 64;
    // werift does not check the server certificate: do it here.
    const der = this.dtls.remoteCertificate;
    if (!der) throw new Error('no server certificate');
    const sc = new X509Certificate(Buffer.from(der));
    if (!sc.verify(CA.publicKey)) throw new Error(`server certificate ${sc.subject} not signed by ${CA.subject}`);
    if (!sc.checkIP(HOST)) throw new Error(`server certificate has no SAN IP ${HOST}`);
    const now = Date.now();
    if (now < Date.parse(sc.validFrom) || now > Date.parse(sc.validTo)) throw new Error('server certificate not valid now');
    this.serverSubject = sc.subject.replace(/\n/g, ',');
    return this;
  }

  // Drop the DTLS state without close_notify (what a rebooting device does).
  async drop() {
    if (this.closed) return;
    this.closed = true;
    this.transport.closed = true;
    for (const ex of this.pendingMid.values()) ex.fail(new Error('session dropped'));
    await new Promise((r) => { this.sock.once('close', r); this.sock.close(); });
  }

  nextMid() { this.mid = (this.mid + 1) & 0xffff; return this.mid; }

  sendRaw(raw) {
    this.trace.push({ dir: 'out', t: Date.now(), raw });
    this.dtls.send(raw).catch((e) => console.log(`# ${this.name}: send failed ${e.message}`));
  }

  onPdu(raw) {
    this.trace.push({ dir: 'in', t: Date.now(), raw });
    let p;
    try { p = coap.parse(raw); } catch (e) { console.log(`# ${this.name}: bad PDU ${e.message}`); return; }
    if (p.code === '0.00' && p.confirmable) { // CoAP ping: RST (RFC 7252 §4.3)
      this.sendRaw(coap.generate({ code: '0.00', reset: true, messageId: p.messageId }));
      return;
    }
    if (p.ack || p.reset) {
      const ex = this.pendingMid.get(p.messageId);
      if (ex) ex.onAck(p, raw);
      return;
    }
    // A separate response (CON or NON). ACK every CON, duplicates too.
    if (p.confirmable) this.sendRaw(coap.generate({ code: '0.00', ack: true, messageId: p.messageId }));
    const ex = this.pendingTok.get(p.token.toString('hex'));
    if (ex) ex.onSeparate(p, raw);
  }

  // Send one CON request (raw bytes with message ID mid and token tok) with
  // RFC 7252 §4.2 retransmission; resolves with the response:
  //   { p, raw, separate, events: ['emptyACK', 'CON 2.04', ...], ms }
  exchange(raw, mid, tok, { separateTimeout = SEPARATE_TIMEOUT } = {}) {
    return new Promise((resolve, reject) => {
      const t0 = Date.now();
      const events = [];
      let timer = null;
      let attempts = 0;
      let timeout = ACK_TIMEOUT * (1 + Math.random() * (ACK_RANDOM_FACTOR - 1));
      const tokHex = tok.toString('hex');
      const done = (err, val) => {
        clearTimeout(timer);
        if (this.pendingMid.get(mid) === ex) this.pendingMid.delete(mid);
        if (this.pendingTok.get(tokHex) === ex) this.pendingTok.delete(tokHex);
        err ? reject(err) : resolve(val);
      };
      const retransmit = () => {
        if (attempts >= MAX_RETRANSMIT) {
          done(new Error(`no ACK for MID ${mid.toString(16)} after ${attempts} retransmissions`));
          return;
        }
        attempts++;
        events.push(`retransmit ${attempts}`);
        this.sendRaw(raw);
        timeout *= 2;
        timer = setTimeout(retransmit, timeout);
      };
      const ex = {
        onAck: (p, r) => {
          if (p.reset) { done(new Error(`RST for MID ${mid.toString(16)}`)); return; }
          if (p.code === '0.00') {
            events.push('emptyACK');
            clearTimeout(timer);
            timer = setTimeout(() => done(new Error(`no separate response within ${separateTimeout} ms`)), separateTimeout);
            return;
          }
          if (!p.token.equals(tok)) { done(new Error(`ACK with another token: ${fmt(r)}`)); return; }
          events.push(`ACK ${p.code}`);
          done(null, { p, raw: r, separate: false, events, ms: Date.now() - t0 });
        },
        onSeparate: (p, r) => {
          events.push(`${typeOf(p)} ${p.code}`);
          this.pendingMid.delete(mid);
          done(null, { p, raw: r, separate: true, events, ms: Date.now() - t0 });
        },
        fail: (e) => done(e),
      };
      this.pendingMid.set(mid, ex);
      this.pendingTok.set(tokHex, ex);
      this.sendRaw(raw);
      timer = setTimeout(retransmit, timeout);
    });
  }

  // Build and exchange a request; returns { ...response, mid, tok, reqRaw }.
  async request({ code, path: pth, query = [], options = [], payload, tok = randomBytes(4), separateTimeout }) {
    const mid = this.nextMid();
    const opts = [
      ...pth.split('/').filter(Boolean).map((s) => ({ name: 'Uri-Path', value: Buffer.from(s) })),
      ...query.map((q) => ({ name: 'Uri-Query', value: Buffer.from(q) })),
      ...options,
    ];
    const reqRaw = coap.generate({ code, confirmable: true, messageId: mid, token: tok, options: opts, payload });
    const res = await this.exchange(reqRaw, mid, tok, { separateTimeout });
    return { ...res, mid, tok, reqRaw };
  }

  // The PDUs of this session, for failure reports.
  dump(last = 40) {
    return this.trace.slice(-last).map((e) => `    ${e.dir === 'in' ? '<-' : '->'} ${fmt(e.raw)}`).join('\n');
  }
}

// Follow Block2 (RFC 7959 §2.4) from a first response until M=0: later
// requests are the same method and URI with Block2 num/0/szx and the same
// token. Returns the whole body and the response PDUs.
async function followBlock2(sess, first, { code, path: pth, options = [], tok }) {
  const parts = [first.p.payload];
  const pdus = [first];
  let b2 = getOpt(first.p, 'Block2');
  let n = 0;
  while (b2 && parseBlock(b2.value).more) {
    const b = parseBlock(b2.value);
    if (++n > 200) throw new Error('Block2: over 200 blocks');
    const r = await sess.request({ code, path: pth, tok, options: [...options, { name: 'Block2', value: block(b.num + 1, false, b.szx) }] });
    if (r.p.code !== first.p.code) throw new Error(`Block2 ${b.num + 1}: ${r.p.code}: ${fmt(r.raw)}`);
    // RFC 7959 §2.3: Block1 answers a request that carried Block1; these carry none.
    if (getOpt(r.p, 'Block1')) throw new Error(`Block2 ${b.num + 1}: a Block1 option on the answer to a request without one: ${fmt(r.raw)}`);
    const nb = getOpt(r.p, 'Block2');
    if (!nb || parseBlock(nb.value).num !== b.num + 1) throw new Error(`Block2 ${b.num + 1}: wrong Block2 in ${fmt(r.raw)}`);
    parts.push(r.p.payload);
    pdus.push(r);
    b2 = nb;
  }
  return { body: Buffer.concat(parts), pdus };
}

// POST a body in Block1 blocks of 2^(szx+4) bytes (RFC 7959 §2.5), asking
// for Block2 of the same size on the last block. tagMode 'rtag': a new
// token per block and one Request-Tag (RFC 9175); 'token': one token, no
// Request-Tag. hooks.onBlock(i, res, sess) runs after block i's answer.
async function postBlockwise(sess, pth, body, { cf, accept, szx = 2, tagMode, hooks = {} }) {
  const size = 16 << szx;
  const nblocks = Math.ceil(body.length / size);
  const rtag = randomBytes(4);
  const fixedTok = randomBytes(4);
  const common = [{ name: 'Content-Format', value: uintBuf(cf) }];
  if (accept !== undefined) common.push({ name: 'Accept', value: uintBuf(accept) });
  if (tagMode === 'rtag') common.push({ name: '292', value: rtag });
  let last;
  for (let i = 0; i < nblocks; i++) {
    const more = i < nblocks - 1;
    const options = [...common, { name: 'Block1', value: block(i, more, szx) }];
    if (i === 0) options.push({ name: 'Size1', value: uintBuf(body.length) });
    if (!more) options.push({ name: 'Block2', value: block(0, false, szx) });
    const tok = tagMode === 'rtag' ? randomBytes(4) : fixedTok;
    const res = await sess.request({ code: 'POST', path: pth, options, tok, payload: body.subarray(i * size, (i + 1) * size) });
    const b1 = getOpt(res.p, 'Block1');
    const e = b1 && parseBlock(b1.value);
    if (more) {
      if (res.p.code !== '2.31') throw new Error(`block ${i}: want 2.31, got ${fmt(res.raw)}`);
      if (!e || e.num !== i || !e.more || e.szx !== szx) throw new Error(`block ${i}: Block1 echo wrong: ${fmt(res.raw)}`);
    } else if (!e || e.num !== i || e.more) {
      throw new Error(`last block ${i}: Block1 echo not ${i}/_/${size}: ${fmt(res.raw)}`);
    }
    if (hooks.onBlock) await hooks.onBlock(i, res, sess, more);
    last = res;
  }
  const full = await followBlock2(sess, last, { code: 'POST', path: pth, tok: last.tok, options: tagMode === 'rtag' ? [common[common.length - 1]] : [] });
  return { last, body: full.body, pdus: full.pdus, nblocks };
}

// ---------------------------------------------------------------- the steps
const results = [];
async function step(n, name, fn) {
  const t0 = Date.now();
  let sess;
  const open = async (localPort = 0, label = name) => { sess = await new Session(`${n}:${label}`, localPort).open(); return sess; };
  const use = (s) => { sess = s; return s; };
  try {
    const msg = await withTimeout(fn(open, use), 90000, `step ${n}`);
    console.log(`STEP ${n} ${name} OK ${msg} (${Date.now() - t0} ms)`);
    results.push(true);
  } catch (e) {
    console.log(`STEP ${n} ${name} FAIL ${e.message} (${Date.now() - t0} ms)`);
    if (sess) console.log(`  PDUs of session ${sess.name}:\n${sess.dump()}`);
    results.push(false);
  }
  if (sess && !sess.keep) await sess.drop();
}
const readCsr = (f) => fs.readFileSync(path.join(OUT, f));
const write = (f, b) => fs.writeFileSync(path.join(OUT, f), b);
const caDer = CA.raw;

// 1. Discovery with an rt filter (RFC 9148 §4.1, RFC 6690).
await step(1, 'discovery', async (open) => {
  const s = await open();
  const r = await s.request({ code: 'GET', path: '/.well-known/core', query: ['rt=ace.est*'] });
  if (r.p.code !== '2.05') throw new Error(`want 2.05: ${fmt(r.raw)}`);
  if (cfOf(r.p) !== 40) throw new Error(`Content-Format ${cfOf(r.p)}, want 40`);
  const { body } = await followBlock2(s, r, { code: 'GET', path: '/.well-known/core', tok: r.tok, options: [{ name: 'Uri-Query', value: Buffer.from('rt=ace.est*') }] });
  const text = body.toString('utf8');
  // link-format: <uri>;attr=val;attr="v v",<uri>...
  const links = {};
  for (const l of text.split(/,(?=<)/)) {
    const m = l.match(/^<([^>]*)>(.*)$/);
    if (!m) throw new Error(`bad link '${l}' in '${text}'`);
    const attrs = {};
    for (const a of m[2].split(';').filter(Boolean)) {
      const [k, v = ''] = a.split('=');
      attrs[k] = v.replace(/^"(.*)"$/, '$1');
    }
    links[m[1]] = attrs;
  }
  for (const [uri, rt] of [['/est/crts', 'ace.est.crts'], ['/est/sen', 'ace.est.sen']]) {
    const a = links[uri];
    if (!a) throw new Error(`no ${uri} link in '${text}'`);
    if (a.rt !== rt) throw new Error(`${uri} rt='${a.rt}', want ${rt}`);
    if (a.ct !== '281 287') throw new Error(`${uri} ct='${a.ct}', want '281 287'`);
  }
  for (const [uri, a] of Object.entries(links)) {
    if (!String(a.rt).startsWith('ace.est')) throw new Error(`filter let through ${uri} rt=${a.rt}`);
  }
  return `links=${Object.keys(links).join(' ')} handshake=${s.handshakeMs}ms server="${s.serverSubject}"`;
});

// 2. /crts (RFC 9148 §4.3).
await step(2, 'crts', async (open) => {
  const s = await open();
  const r = await s.request({ code: 'GET', path: '/est/crts' });
  if (r.p.code !== '2.05') throw new Error(`want 2.05: ${fmt(r.raw)}`);
  if (cfOf(r.p) !== 281) throw new Error(`Content-Format ${cfOf(r.p)}, want 281`);
  const { body, pdus } = await followBlock2(s, r, { code: 'GET', path: '/est/crts', tok: r.tok });
  write('crts.p7', body);
  if (body.indexOf(caDer) < 0) throw new Error('the PKCS#7 does not hold ca.crt');
  return `${body.length} bytes in ${pdus.length} PDU(s), holds ca.crt`;
});

// 3. /sen with 64-byte Block1 and Block2 (RFC 9148 §4.2, RFC 7959, RFC 9175).
for (const [n, mode] of [['3a', 'rtag'], ['3b', 'token']]) {
  await step(n, `sen-${mode}`, async (open) => {
    const s = await open();
    const csr = readCsr(`sen-${mode}.csr`);
    const r = await postBlockwise(s, '/est/sen', csr, { cf: 286, accept: 281, tagMode: mode });
    if (r.last.p.code !== '2.04') throw new Error(`want 2.04: ${fmt(r.last.raw)}`);
    if (cfOf(r.last.p) !== 281) throw new Error(`Content-Format ${cfOf(r.last.p)}, want 281`);
    const b2 = r.pdus.map((x) => getOpt(x.p, 'Block2')).filter(Boolean).map((o) => parseBlock(o.value));
    if (r.pdus.length < 2 || b2.length !== r.pdus.length || b2.some((b) => b.szx !== 2)) {
      throw new Error(`response not in 64-byte Block2 blocks: ${r.pdus.map((x) => fmt(x.raw)).join(' | ')}`);
    }
    write(`sen-${mode}.p7`, r.body);
    return `CSR ${csr.length} bytes in ${r.nblocks} Block1 blocks (${mode === 'rtag' ? 'Request-Tag, new token per block' : 'one token, no Request-Tag'}), PKCS#7 ${r.body.length} bytes in ${r.pdus.length} Block2 blocks`;
  });
}

// 4. /skg: empty ACK, then a separate CON 2.04 that we ACK (RFC 9148 §4.7-§4.8).
let skgState = null;
await step(4, 'skg', async (open) => {
  const s = await open();
  const csr = readCsr('skg.csr');
  const r = await s.request({ code: 'POST', path: '/est/skg', payload: csr, options: [{ name: 'Content-Format', value: uintBuf(286) }, { name: 'Accept', value: uintBuf(62) }] });
  if (r.p.code !== '2.04') throw new Error(`want 2.04: ${fmt(r.raw)}`);
  if (!r.separate || !r.p.confirmable) throw new Error(`not a separate CON response: events ${r.events.join(', ')}`);
  if (r.events[0] !== 'emptyACK') throw new Error(`the empty ACK did not come first: ${r.events.join(', ')}`);
  if (cfOf(r.p) !== 62) throw new Error(`Content-Format ${cfOf(r.p)}, want 62`);
  if (r.p.messageId === r.mid) throw new Error('separate CON reuses the request MID');
  // Our ACK for the CON went out (onPdu); check it is in the trace.
  await sleep(50);
  const acked = s.trace.some((e) => e.dir === 'out' && (() => { const p = coap.parse(e.raw); return p.ack && p.code === '0.00' && p.messageId === r.p.messageId; })());
  if (!acked) throw new Error('no ACK sent for the separate CON');
  const { body } = await followBlock2(s, r, { code: 'POST', path: '/est/skg', tok: r.tok });
  write('skg.mp', body);
  // Step 5c reuses this session: keep it open.
  skgState = { s, r };
  s.keep = true;
  return `events ${r.events.join(', ')}; separate CON MID ${r.p.messageId.toString(16)} ACKed; multipart ${body.length} bytes; ${r.ms} ms`;
});

// 5a. A duplicate middle Block1 block (same MID and token) gets the same 2.31.
await step('5a', 'dup-block', async (open) => {
  const s = await open();
  const csr = readCsr('dup-block.csr');
  let note = '';
  const r = await postBlockwise(s, '/est/sen', csr, {
    cf: 286, accept: 281, tagMode: 'token',
    hooks: {
      onBlock: async (i, res, sess, more) => {
        if (i !== 1 || !more) return;
        const dup = await sess.exchange(res.reqRaw, res.mid, res.tok);
        const b1a = getOpt(res.p, 'Block1');
        const b1b = getOpt(dup.p, 'Block1');
        if (dup.p.code !== '2.31') throw new Error(`duplicate of block 1: want 2.31, got ${fmt(dup.raw)} (first: ${fmt(res.raw)})`);
        if (!b1b || !b1a.value.equals(b1b.value)) throw new Error(`duplicate of block 1: Block1 echo differs: ${fmt(dup.raw)} vs ${fmt(res.raw)}`);
        note = `duplicate MID ${res.mid.toString(16)} answered ${fmt(dup.raw).split(' raw=')[0]}${dup.raw.equals(res.raw) ? ' (byte-identical)' : ''}`;
      },
    },
  });
  if (!note) throw new Error(`CSR too short for a middle block (${r.nblocks} blocks)`);
  if (r.last.p.code !== '2.04') throw new Error(`transfer after the duplicate: want 2.04: ${fmt(r.last.raw)}`);
  write('dup-block.p7', r.body);
  return `${note}; transfer completed 2.04, PKCS#7 ${r.body.length} bytes`;
});

// 5b. After the 2.04, the final block's CON again (same MID): the same answer.
await step('5b', 'dup-final', async (open) => {
  const s = await open();
  const csr = readCsr('dup-final.csr');
  let finalRes = null;
  const r = await postBlockwise(s, '/est/sen', csr, {
    cf: 286, accept: 281, tagMode: 'rtag',
    hooks: { onBlock: async (i, res, sess, more) => { if (!more) finalRes = res; } },
  });
  if (r.last.p.code !== '2.04') throw new Error(`want 2.04: ${fmt(r.last.raw)}`);
  write('dup-final.p7', r.body);
  const dup = await s.exchange(finalRes.reqRaw, finalRes.mid, finalRes.tok);
  if (!dup.raw.equals(finalRes.raw)) {
    // Say what differs: the code, the payload, which options.
    const a = finalRes.p, b = dup.p;
    const diff = [];
    if (a.code !== b.code) diff.push(`code ${a.code} vs ${b.code}`);
    if (!a.payload.equals(b.payload)) diff.push('payload');
    const names = [...new Set([...a.options, ...b.options].map((o) => o.name))];
    for (const n of names) {
      const va = getOptAll(a, n).map((o) => o.value.toString('hex')).join(',');
      const vb = getOptAll(b, n).map((o) => o.value.toString('hex')).join(',');
      if (va !== vb) diff.push(`${optName[n] || n} 0x${va || '-'} vs 0x${vb || '-'}`);
    }
    throw new Error(`the answer to the duplicate final block (same MID ${finalRes.mid.toString(16)}) is not byte-identical; differs in: ${diff.join('; ')}\n    first: ${fmt(finalRes.raw)}\n    dup:   ${fmt(dup.raw)}`);
  }
  // The whole certificate again from the duplicate's answer.
  const again = await followBlock2(s, dup, { code: 'POST', path: '/est/sen', tok: dup.tok, options: [{ name: '292', value: getOpt(coap.parse(finalRes.reqRaw), '292').value }] });
  if (!again.body.equals(r.body)) throw new Error(`the certificate after the duplicate differs (${again.body.length} vs ${r.body.length} bytes)`);
  write('dup-final-again.p7', again.body);
  return `duplicate final block MID ${finalRes.mid.toString(16)} answered byte-identically (${dup.raw.length} bytes), same PKCS#7 ${again.body.length} bytes`;
});

// 5c. The skg CON again (same MID) after its separate response: an empty ACK.
await step('5c', 'dup-skg', async (open, use) => {
  if (!skgState) throw new Error('step 4 did not finish');
  const { s, r } = skgState;
  use(s);
  const got = [];
  const ex = {
    onAck: (p, raw) => got.push(raw),
    onSeparate: (p, raw) => got.push(raw),
    fail: () => {},
  };
  s.pendingMid.set(r.mid, ex);
  s.pendingTok.set(r.tok.toString('hex'), ex);
  s.sendRaw(r.reqRaw);
  // Retransmit like a client that lost the response would, until answered.
  for (let i = 0; i < 30 && got.length === 0; i++) await sleep(100);
  if (got.length === 0) { s.sendRaw(r.reqRaw); for (let i = 0; i < 40 && got.length === 0; i++) await sleep(100); }
  await sleep(2500); // anything else that comes (a second 2.04 would be wrong)
  s.pendingMid.delete(r.mid);
  s.pendingTok.delete(r.tok.toString('hex'));
  s.keep = false;
  if (got.length === 0) throw new Error('no answer to the duplicate skg CON');
  const p = coap.parse(got[0]);
  if (!(p.ack && p.code === '0.00' && p.messageId === r.mid)) throw new Error(`want an empty ACK for MID ${r.mid.toString(16)}, got ${fmt(got[0])}`);
  const extra = got.slice(1).map(fmt);
  if (extra.length) throw new Error(`after the empty ACK also got: ${extra.join(' | ')}`);
  await s.drop();
  return `duplicate skg CON MID ${r.mid.toString(16)} answered with an empty ACK only`;
});
if (skgState && !skgState.s.closed) await skgState.s.drop();

// One Block1 block of a /sen upload with a Request-Tag; the last one asks
// for 64-byte Block2 blocks.
function senBlock(sess, csr, i, rtag, tok = randomBytes(4)) {
  const size = 64;
  const more = (i + 1) * size < csr.length;
  const options = [
    { name: 'Content-Format', value: uintBuf(286) }, { name: 'Accept', value: uintBuf(281) },
    { name: '292', value: rtag }, { name: 'Block1', value: block(i, more, 2) },
  ];
  if (!more) options.push({ name: 'Block2', value: block(0, false, 2) });
  const payload = csr.subarray(i * size, (i + 1) * size);
  return sess.request({ code: 'POST', path: '/est/sen', options, tok, payload }).then((r) => ({ ...r, more }));
}
const senBlocks = (csr) => Math.ceil(csr.length / 64);
const tagOpt = (rtag) => [{ name: '292', value: rtag }];

// 5d. Two uploads in one session, their blocks interleaved, told apart by
// Request-Tag (RFC 9175 §3); each gets its own certificate.
await step('5d', 'two-uploads', async (open) => {
  const s = await open();
  const csrs = [readCsr('two-a.csr'), readCsr('two-b.csr')];
  const tags = [randomBytes(4), randomBytes(4)];
  const n = csrs.map(senBlocks);
  const last = [null, null];
  for (let i = 0; i < Math.max(...n); i++) {
    for (const k of [0, 1]) {
      if (i >= n[k]) continue;
      const r = await senBlock(s, csrs[k], i, tags[k]);
      const want = r.more ? '2.31' : '2.04';
      if (r.p.code !== want) throw new Error(`upload ${k} block ${i}: want ${want}, got ${fmt(r.raw)}`);
      if (!r.more) last[k] = r;
    }
  }
  // Fetch the first upload's blocks last: the Request-Tag picks its answer.
  for (const k of [1, 0]) {
    const { body } = await followBlock2(s, last[k], { code: 'POST', path: '/est/sen', tok: last[k].tok, options: tagOpt(tags[k]) });
    write(`two-${'ab'[k]}.p7`, body);
  }
  return `${n[0]} and ${n[1]} blocks interleaved in one session, both answered 2.04`;
});

// 5e. Blocks sent again as NEW messages (new Message ID; a client whose
// ACK wait ran out and that starts the exchange afresh): a middle block
// gets the same 2.31, the last block after its 2.04 the same answer.
await step('5e', 'new-mid-repeats', async (open) => {
  const s = await open();
  const csr = readCsr('newmid.csr');
  const tag = randomBytes(4);
  const n = senBlocks(csr);
  if (n < 3) throw new Error(`CSR too short (${n} blocks)`);
  let last = null;
  for (let i = 0; i < n; i++) {
    const r = await senBlock(s, csr, i, tag);
    if (i === 1) {
      const again = await senBlock(s, csr, 1, tag);
      if (again.mid === r.mid) throw new Error('the repeat did not get a new Message ID');
      if (again.p.code !== '2.31' || !getOpt(again.p, 'Block1') || !getOpt(again.p, 'Block1').value.equals(getOpt(r.p, 'Block1').value)) {
        throw new Error(`middle block 1 again (new MID): want the same 2.31, got ${fmt(again.raw)} (first ${fmt(r.raw)})`);
      }
    }
    last = r;
  }
  if (last.p.code !== '2.04') throw new Error(`last block: want 2.04, got ${fmt(last.raw)}`);
  const first = await followBlock2(s, last, { code: 'POST', path: '/est/sen', tok: last.tok, options: tagOpt(tag) });
  const again = await senBlock(s, csr, n - 1, tag);
  if (again.p.code !== '2.04' || !again.p.payload.equals(last.p.payload)) {
    throw new Error(`last block again (new MID): want the same 2.04, got ${fmt(again.raw)} (first ${fmt(last.raw)})`);
  }
  const second = await followBlock2(s, again, { code: 'POST', path: '/est/sen', tok: again.tok, options: tagOpt(tag) });
  if (!second.body.equals(first.body)) throw new Error('the certificate differs after the last block was sent again');
  write('newmid.p7', first.body);
  return `middle block and last block each sent again with a new MID: same 2.31, same 2.04 and PKCS#7 (${first.body.length} bytes)`;
});

// 5f. The Block2 blocks of a POST's answer asked for 9 s later (a device
// on a slow link; libcoap's own Block2 state lasts 8 s): still served,
// from the answer kept, not by running the request again.
await step('5f', 'late-block2', async (open) => {
  const s = await open();
  const csr = readCsr('late-b2.csr');
  const tag = randomBytes(4);
  let last = null;
  for (let i = 0; i < senBlocks(csr); i++) last = await senBlock(s, csr, i, tag);
  if (last.p.code !== '2.04') throw new Error(`want 2.04, got ${fmt(last.raw)}`);
  const b2 = getOpt(last.p, 'Block2');
  if (!b2 || !parseBlock(b2.value).more) throw new Error(`the answer is not block-wise: ${fmt(last.raw)}`);
  await sleep(9000);
  const { body, pdus } = await followBlock2(s, last, { code: 'POST', path: '/est/sen', tok: last.tok, options: tagOpt(tag) });
  write('late-b2.p7', body);
  return `Block2 blocks 1..${pdus.length - 1} fetched 9 s after block 0, PKCS#7 ${body.length} bytes`;
});

// 6. Reboot: the same local port, no close_notify, a new handshake.
await step(6, 'reboot', async (open) => {
  const a = await open(LOCAL_PORT, 'before');
  const r1 = await a.request({ code: 'GET', path: '/est/crts' });
  if (r1.p.code !== '2.05') throw new Error(`before the reboot: want 2.05: ${fmt(r1.raw)}`);
  await followBlock2(a, r1, { code: 'GET', path: '/est/crts', tok: r1.tok });
  await a.drop(); // no close_notify: the socket and the DTLS state just go
  const t0 = Date.now();
  const b = await open(LOCAL_PORT, 'after');
  const hs = Date.now() - t0;
  const r2 = await b.request({ code: 'GET', path: '/est/crts' });
  if (r2.p.code !== '2.05') throw new Error(`after the reboot: want 2.05: ${fmt(r2.raw)}`);
  const { body } = await followBlock2(b, r2, { code: 'GET', path: '/est/crts', tok: r2.tok });
  if (body.indexOf(caDer) < 0) throw new Error('after the reboot: the PKCS#7 does not hold ca.crt');
  const ms = Date.now() - t0;
  if (ms > 15000) throw new Error(`the rebooted client waited ${ms} ms`);
  return `local port ${LOCAL_PORT}: new handshake after ${hs} ms, 2.05 after ${ms} ms`;
});

// 7. A block out of sequence (RFC 7959 §2.3): 4.08, for a middle block
// and for a last block alike, each with the Block1 echo and a diagnostic.
await step(7, 'block-gap', async (open) => {
  const s = await open();
  const notes = [];
  for (const [num, more] of [[2, true], [3, false]]) {
    const options = [
      { name: 'Content-Format', value: uintBuf(286) },
      { name: 'Block1', value: block(num, more, 2) },
    ];
    const r = await s.request({ code: 'POST', path: '/est/sen', options, payload: Buffer.alloc(more ? 64 : 10, 0x30) });
    if (r.p.code !== '4.08') throw new Error(`block ${num} (M=${more}) alone: want 4.08, got ${fmt(r.raw)}`);
    const b1 = getOpt(r.p, 'Block1');
    if (!b1 || parseBlock(b1.value).num !== num) throw new Error(`block ${num}: 4.08 without the Block1 echo: ${fmt(r.raw)}`);
    if (!r.p.payload || r.p.payload.length === 0) throw new Error(`block ${num}: 4.08 without a diagnostic: ${fmt(r.raw)}`);
    notes.push(`block ${num}${more ? '/M' : ''}: 4.08 Block1 ${num} '${r.p.payload.toString()}'`);
  }
  return notes.join('; ');
});

// 8. Revocation on an open session (docs/decisions.md §14): the LDevID
// estctl revokes is refused at its next request, in the same DTLS session,
// on every function.
await step(8, 'revoked-open-session', async (open, use) => {
  for (const k of ['ldevid', 'estctl', 'db', 'serial']) if (!args[k]) throw new Error(`needs --${k}`);
  const cert = pemBlock(fs.readFileSync(`${args.ldevid}.crt`, 'latin1'), 'CERTIFICATE');
  const key = createPrivateKey(pemBlock(fs.readFileSync(`${args.ldevid}.key`, 'latin1'), '[A-Z ]*PRIVATE KEY'))
    .export({ type: 'pkcs8', format: 'pem' }).toString();
  const s = use(await new Session('8:ldevid', 0, { cert, key }).open());
  const csr = readCsr('ldev-next.csr');
  const cf = [{ name: 'Content-Format', value: uintBuf(286) }];
  const before = await s.request({ code: 'POST', path: '/est/sen', options: cf, payload: csr });
  if (before.p.code !== '2.04') throw new Error(`before the revocation: sen wants 2.04, got ${fmt(before.raw)}`);
  const { execFileSync } = await import('node:child_process');
  execFileSync(args.estctl, ['--db', args.db, '--actor', 'node-step-8', 'revoke', args.serial, '--reason', 'keyCompromise'],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 20000 });
  const seen = [];
  for (const [code, p, payload] of [['GET', '/est/crts'], ['POST', '/est/sen', csr], ['POST', '/est/sren', csr], ['POST', '/est/skg', csr]]) {
    const r = await s.request({ code, path: p, options: payload ? cf : [], payload });
    const text = r.p.payload ? r.p.payload.toString() : '';
    if (r.p.code !== '4.03' || text !== 'client certificate revoked') {
      throw new Error(`${code} ${p} after the revocation, same session: want 4.03 'client certificate revoked', got ${fmt(r.raw)}`);
    }
    seen.push(`${p.split('/').pop()} 4.03`);
  }
  if (s.closed) throw new Error('the session was closed');
  return `sen 2.04, then estctl revoke; same session (no new handshake): ${seen.join(', ')} '${'client certificate revoked'}'`;
});

const failed = results.filter((x) => !x).length;
console.log(`SUMMARY ${results.length - failed}/${results.length} steps passed`);
process.exit(failed);
