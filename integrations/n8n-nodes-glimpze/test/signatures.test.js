// The signature helpers against vectors made by Glimpze's own signing code (glimpze/signing.py,
// signature_headers) — so the node and the server agree byte for byte.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const {
	glimpzeSignature,
	standardSignature,
	verifyDelivery,
	verifyGlimpzeSignature,
	verifyStandardWebhook,
} = require('../dist/nodes/shared/signatures.js');

const SECRET = 'whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const OLD_SECRET = 'whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM=';
const T = 1767225600;
const BODY = Buffer.from('{"id":"evt_1","event":"webhook.test","occurred_at":"2026-01-01T00:00:00.000Z"}');
const GLIMPZE_V1 = 'fad77ae75e5715fa68095a11a216f026f4e32edc86718d835ffbf33613c34994';
const STANDARD_V1 = 'LX9td3DqLeKn85KHQM/piSnTR0DqaWUW7VRknx4eDNI=';
// Signed during a rotation: the old secret's signature first, then the current one's.
const ROTATING = {
	'x-glimpze-signature': `t=${T},v1=c8e81594b0af31e3b246ae44f778496fdaf658516901f01798bce8ce8ccc4cbb,v1=${GLIMPZE_V1}`,
	'webhook-id': 'dlv_1',
	'webhook-timestamp': String(T),
	'webhook-signature': `v1,f9f3r/S5zKTkqrbfPFDog6TIqueNvM1UvBmsnBP1Jso= v1,${STANDARD_V1}`,
};

const signed = () => ({
	'x-glimpze-signature': `t=${T},v1=${GLIMPZE_V1}`,
	'webhook-id': 'dlv_1',
	'webhook-timestamp': String(T),
	'webhook-signature': `v1,${STANDARD_V1}`,
});

test('signatures are computed exactly as Glimpze computes them', () => {
	assert.equal(glimpzeSignature(SECRET, T, BODY), GLIMPZE_V1);
	assert.equal(standardSignature(SECRET, 'dlv_1', T, BODY), STANDARD_V1);
});

test('a genuine delivery verifies by either scheme, at the edge of the tolerance', () => {
	assert.deepEqual(verifyStandardWebhook(signed(), BODY, [SECRET], T + 300), { valid: true, scheme: 'standard-webhooks' });
	assert.deepEqual(verifyGlimpzeSignature(signed(), BODY, [SECRET], T - 300), { valid: true, scheme: 'glimpze' });
	assert.equal(verifyDelivery(signed(), BODY, [SECRET], T).valid, true);
	const glimpzeOnly = { 'x-glimpze-signature': signed()['x-glimpze-signature'] };
	assert.deepEqual(verifyDelivery(glimpzeOnly, BODY, [SECRET], T), { valid: true, scheme: 'glimpze' });
});

test('during a secret rotation either secret verifies', () => {
	assert.equal(verifyDelivery(ROTATING, BODY, [SECRET], T).valid, true);
	assert.equal(verifyDelivery(ROTATING, BODY, [OLD_SECRET], T).valid, true);
	assert.equal(verifyGlimpzeSignature(ROTATING, BODY, [OLD_SECRET], T).valid, true);
});

test('a changed body, a wrong secret or a stale timestamp is refused', () => {
	const tampered = Buffer.from(BODY.toString().replace('webhook.test', 'feed.event'));
	for (const verify of [verifyStandardWebhook, verifyGlimpzeSignature, verifyDelivery]) {
		assert.equal(verify(signed(), tampered, [SECRET], T).valid, false, verify.name);
		assert.equal(verify(signed(), BODY, [OLD_SECRET], T).valid, false, verify.name);
		assert.match(verify(signed(), BODY, [SECRET], T + 301).reason, /timestamp/, verify.name);
		assert.match(verify(signed(), BODY, [SECRET], T - 301).reason, /timestamp/, verify.name);
	}
	assert.equal(verifyStandardWebhook(signed(), BODY, [SECRET], T + 60, 30).valid, false);
});

test('a re-signed timestamp without the secret does not verify', () => {
	const headers = { ...signed(), 'webhook-timestamp': String(T + 1) };
	assert.equal(verifyStandardWebhook(headers, BODY, [SECRET], T).valid, false);
	const glimpze = { 'x-glimpze-signature': `t=${T + 1},v1=${GLIMPZE_V1}` };
	assert.equal(verifyGlimpzeSignature(glimpze, BODY, [SECRET], T).valid, false);
});

test('unsigned, malformed or secretless checks are refused with a reason', () => {
	assert.deepEqual(verifyDelivery({}, BODY, [SECRET], T), { valid: false, reason: 'the request carries no Glimpze signature' });
	assert.equal(verifyDelivery(signed(), BODY, [], T).valid, false);
	assert.equal(verifyDelivery(signed(), BODY, [''], T).valid, false);
	assert.equal(verifyDelivery({ ...signed(), 'webhook-signature': 'v1,' }, BODY, [SECRET], T).valid, false);
	assert.equal(verifyDelivery({ ...signed(), 'webhook-timestamp': 'soon' }, BODY, [SECRET], T).valid, false);
	const noStamp = { 'x-glimpze-signature': `v1=${GLIMPZE_V1}` };
	assert.equal(verifyGlimpzeSignature(noStamp, BODY, [SECRET], T).valid, false);
	const noId = { ...signed() };
	delete noId['webhook-id'];
	assert.equal(verifyStandardWebhook(noId, BODY, [SECRET], T).valid, false);
});
