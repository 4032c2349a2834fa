import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostileKeys } from 'persist-location/testing';
import { percentEscaper, percentSpellings, percentUnescape } from '../src/escape.js';

const escape = percentEscaper('abc-', '0123456789ABCDEF');

test('percent escaping round-trips every hostile key and keeps only the literal set', () => {
  for (const key of hostileKeys()) {
    const e = escape(key);
    assert.match(e, /^(?:[abc-]|%[0-9A-F]{2})*$/, key);
    assert.equal(percentUnescape(e), key);
  }
  assert.equal(escape('abc'), 'abc');
  assert.equal(escape('a/B é'), 'a%2F%42%20%C3%A9');
  assert.equal(percentEscaper('x', '0123456789abcdef')('é'), '%c3%a9');
});

test('percent escaping preserves prefixes', () => {
  const keys = hostileKeys();
  for (const k of keys) {
    for (const p of keys) {
      assert.equal(escape(k).startsWith(escape(p)), k.startsWith(p), `${JSON.stringify(k)} / ${JSON.stringify(p)}`);
    }
  }
});

test('unescaping rejects what no string spells', () => {
  for (const bad of ['%', '%4', '%zz', 'é', '%C3', '%FF', '%ED%A0%80']) assert.equal(percentUnescape(bad), undefined, bad);
  assert.equal(percentUnescape('%41%62c'), 'Abc');
});

test('an escaper that would be ambiguous cannot be built', () => {
  assert.throws(() => percentEscaper('ab%', '0123456789ABCDEF'), /'%'|"%"/);
  assert.throws(() => percentEscaper('abé', '0123456789ABCDEF'), /cannot be kept literally/);
});

test('the byte spellings are what the escaper writes, byte by byte', () => {
  const spelled = percentSpellings('abc-', '0123456789ABCDEF');
  assert.equal(spelled.length, 256);
  for (const key of hostileKeys()) assert.equal([...Buffer.from(key, 'utf8')].map((b) => spelled[b]).join(''), escape(key), key);
  assert.throws(() => percentSpellings('%', '0123456789ABCDEF'), /cannot be kept literally/);
});
