// The Glimpze node against a real Glimpze server (started by tests/test_n8n_node.py): each
// operation's execute() and the approval's webhook() run with a minimal n8n context and real HTTP.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Glimpze } = require('../dist/nodes/Glimpze/Glimpze.node.js');
const { idempotencyKey } = require('../dist/nodes/shared/transport.js');
const { standardSignature } = require('../dist/nodes/shared/signatures.js');
const { env, NO_SERVER, credentials, executeContext, webhookContext, receiver, n8nAnswer, api } = require('./support.js');

const node = new Glimpze();

function statusParams(overrides = {}) {
	return {
		operation: 'sendEvent',
		feedId: env.statusFeed,
		defineEvent: 'fields',
		schemaType: 'status',
		title: 'Nightly backup',
		status: 'success',
		message: 'Done in 42 s',
		metadata: '{"job": "backup"}',
		updateWidget: true,
		sendPush: false,
		options: {},
		...overrides,
	};
}

test('idempotency keys: stable for one item of one run, different for anything else', () => {
	const base = { instanceId: 'i', workflowId: 'w', executionId: '7', nodeName: 'Glimpze', runIndex: 0, itemIndex: 0 };
	const key = idempotencyKey(base);
	assert.match(key, /^n8n-[0-9a-f]{48}$/);
	assert.equal(idempotencyKey({ ...base }), key);
	for (const change of [{ instanceId: 'j' }, { executionId: '8' }, { nodeName: 'Glimpze1' }, { runIndex: 1 }, { itemIndex: 1 }]) {
		assert.notEqual(idempotencyKey({ ...base, ...change }), key, JSON.stringify(change));
	}
});

test('send event: the widget shows it', { skip: NO_SERVER }, async () => {
	const ctx = executeContext({ params: statusParams(), creds: credentials(env.statusWriteKey) });
	const [[item]] = await node.execute.call(ctx);
	assert.equal(item.json.status, 'accepted');
	assert.equal(item.json.feed_id, env.statusFeed);
	assert.equal(item.json.widget_updated, true);
	const widget = await api('GET', `/v1/feeds/${env.statusFeed}/widget`);
	assert.equal(widget.status, 200);
	assert.equal(widget.body.event.id, item.json.id);
	assert.deepEqual(widget.body.event.content, { title: 'Nightly backup', status: 'success', message: 'Done in 42 s' });
	assert.deepEqual(widget.body.event.metadata, { job: 'backup' });
});

test('send event: one event per input item, each with its own Idempotency-Key', { skip: NO_SERVER }, async () => {
	const items = [{ json: {} }, { json: {} }];
	const ctx = executeContext({ items, params: statusParams({ title: 'Per item' }), creds: credentials(env.statusWriteKey) });
	const [out] = await node.execute.call(ctx);
	assert.equal(out.length, 2);
	assert.notEqual(out[0].json.id, out[1].json.id);
	assert.deepEqual(out.map((o) => o.pairedItem), [{ item: 0 }, { item: 1 }]);
	const keys = ctx.requests.map((r) => r.options.headers['Idempotency-Key']);
	assert.equal(new Set(keys).size, 2);
});

test('send event: a retry of the same execution is stored once; another execution or n8n install sends anew', { skip: NO_SERVER }, async () => {
	const params = statusParams({ title: 'Retried' });
	const run = async (opts) => {
		const ctx = executeContext({ params, creds: credentials(env.statusWriteKey), executionId: '2001', ...opts });
		const [[item]] = await node.execute.call(ctx);
		return { id: item.json.id, request: ctx.requests[0] };
	};
	const first = await run({});
	const retry = await run({});
	assert.equal(retry.id, first.id, 'Retry On Fail must not store a second event');
	assert.equal(retry.request.options.headers['Idempotency-Key'], first.request.options.headers['Idempotency-Key']);
	assert.notEqual((await run({ executionId: '2002' })).id, first.id);
	assert.notEqual((await run({ instanceId: 'another-install' })).id, first.id);
	assert.notEqual((await run({ runIndex: 1 })).id, first.id);
	const given = await run({ params: { ...params, options: { idempotencyKey: 'my-own-key' } } });
	assert.equal(given.request.options.headers['Idempotency-Key'], 'my-own-key');
});

test('send event: raw JSON is sent as given', { skip: NO_SERVER }, async () => {
	const event = { schema_type: 'status', content: { title: 'From JSON', status: 'warning', message: 'disk 91 %' }, intent: { update_widget: false } };
	const ctx = executeContext({
		params: { operation: 'sendEvent', feedId: env.statusFeed, defineEvent: 'json', eventJson: JSON.stringify(event), options: {} },
		creds: credentials(env.statusWriteKey),
	});
	const [[item]] = await node.execute.call(ctx);
	assert.equal(item.json.widget_updated, false);
	assert.deepEqual(ctx.requests[0].options.body, event);
	const log = await api('GET', `/v1/feeds/${env.statusFeed}/events?limit=1`);
	assert.equal(log.body.data[0].id, item.json.id);
	assert.deepEqual(log.body.data[0].content, event.content);
});

test("send event: Glimpze's refusal names the field; bad JSON is caught before sending", { skip: NO_SERVER }, async () => {
	const missing = executeContext({ params: statusParams({ message: '' }), creds: credentials(env.statusWriteKey) });
	await assert.rejects(node.execute.call(missing), (error) => {
		assert.match(error.message, /\$\.content\.message/);
		assert.match(error.message, /HTTP 422/);
		return true;
	});
	const badJson = executeContext({ params: statusParams({ metadata: '{"job": ' }), creds: credentials(env.statusWriteKey) });
	await assert.rejects(node.execute.call(badJson), /Metadata \(JSON\) is not valid JSON/);
	assert.equal(badJson.requests.length, 0);
	const noKey = executeContext({ params: statusParams(), creds: credentials(undefined) });
	await assert.rejects(node.execute.call(noKey), /write key \(gzw_…\) for \/ingest\//);
});

test('create and close a session', { skip: NO_SERVER }, async () => {
	const created = executeContext({
		params: {
			operation: 'createSession',
			visitorId: 'visitor-42',
			sessionFields: { visitorName: 'Ada', visitorEmail: 'ada@example.com', labels: 'billing, vip', priority: 'high', context: '{"plan": "pro"}' },
		},
		creds: credentials(undefined),
	});
	const [[session]] = await node.execute.call(created);
	assert.match(session.json.id, /^ses_/);
	assert.equal(session.json.status, 'open');
	assert.deepEqual(session.json.labels, ['billing', 'vip']);
	assert.equal(session.json.priority, 'high');
	const closing = executeContext({
		params: { operation: 'closeSession', sessionId: session.json.id, resolution: 'Refund sent' },
		creds: credentials(undefined),
	});
	const [[closed]] = await node.execute.call(closing);
	assert.equal(closed.json.status, 'closed');
	const read = await api('GET', `/v1/sessions/${session.json.id}`);
	assert.equal(read.body.status, 'closed');
});

/** Run the approval node's webhook() for a request the stand-in for n8n received. */
async function resume(request) {
	const ctx = webhookContext(request, { params: { operation: 'sendAndWait', feedId: env.approvalFeed }, creds: credentials(env.approvalWriteKey) });
	const result = await node.webhook.call(ctx);
	return { result, answer: n8nAnswer(ctx, result) };
}

test('ask for approval: waits, a defer keeps waiting, an approve resumes with the seed body', { skip: NO_SERVER }, async () => {
	const results = [];
	const n8n = await receiver(async (request) => {
		const { result, answer } = await resume(request);
		results.push(result);
		return answer;
	});
	try {
		const resumeUrl = `${n8n.base}/webhook-waiting/3001/b3c1a2d4-0000-4000-8000-00000000a001?signature=token`;
		const ctx = executeContext({
			executionId: '3001',
			resumeUrl,
			items: [{ json: { deploy: 'v2.3.0' } }],
			params: { operation: 'sendAndWait', feedId: env.approvalFeed, description: 'Deploy v2.3.0 to production?', metadata: { deployment_id: 'v2.3.0' }, approvalOptions: {} },
			creds: credentials(env.approvalWriteKey),
		});
		const output = await node.execute.call(ctx);
		assert.deepEqual(output, [[{ json: { deploy: 'v2.3.0' } }]]);
		assert.equal(ctx.waits.length, 1);
		assert.equal(ctx.waits[0].toISOString(), '3000-01-01T00:00:00.000Z', 'waits until answered');
		assert.equal(ctx.signatureRequired, true, "n8n checks its resume URL's token");
		const posted = ctx.requests.find((r) => r.options.url.endsWith(`/ingest/${env.approvalFeed}`));
		assert.deepEqual(posted.options.body.callback, { url: resumeUrl, method: 'POST' });
		const eventId = posted.body.id;

		assert.equal((await api('POST', `/v1/approvals/${eventId}/respond`, { action_type: 'defer' })).status, 200);
		const deferred = await n8n.nth(1);
		assert.equal(deferred.request.url, '/webhook-waiting/3001/b3c1a2d4-0000-4000-8000-00000000a001?signature=token');
		assert.equal(deferred.outcome.status, 200);
		assert.equal(results[0].workflowData, undefined, 'a defer does not resume the execution');

		assert.equal((await api('POST', `/v1/approvals/${eventId}/respond`, { action_type: 'approve' })).status, 200);
		const approved = await n8n.nth(2);
		assert.equal(approved.outcome.status, 200);
		const [[item]] = results[1].workflowData;
		assert.deepEqual(Object.keys(item.json), ['feed_id', 'action_type', 'event_id', 'timestamp', 'metadata']);
		assert.equal(item.json.action_type, 'approve');
		assert.equal(item.json.event_id, eventId);
		assert.equal(item.json.feed_id, env.approvalFeed);
		assert.match(item.json.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
		assert.deepEqual(item.json.metadata, { deployment_id: 'v2.3.0' });

		// A Feed ID expression that n8n cannot resolve in a waiting webhook (no input item there):
		// the callback's own feed is looked up, and its signature still has to verify.
		const unresolved = webhookContext(approved.request, { creds: credentials(env.approvalWriteKey) });
		unresolved.getNodeParameter = (name) => {
			throw new Error(`ExpressionError: no input data for ${name}`);
		};
		assert.deepEqual((await node.webhook.call(unresolved)).workflowData, [[{ json: item.json }]]);

		// The same callback, changed by someone on the way, resumes nothing.
		const forged = { ...approved.request, rawBody: Buffer.from(approved.request.rawBody.toString().replace('"approve"', '"reject"')) };
		const refused = await resume(forged);
		assert.equal(refused.result.workflowData, undefined);
		assert.equal(refused.answer.status, 401);
		assert.match(refused.answer.body.error, /invalid signature/);
		// So does a callback correctly signed with the feed's secret but an hour old (a replay).
		const secret = (await api('GET', `/v1/feeds/${env.approvalFeed}`)).body.callback_secret;
		const old = Math.floor(Date.now() / 1000) - 3600;
		const body = approved.request.rawBody;
		const replayed = await resume({
			...approved.request,
			headers: {
				'content-type': 'application/json',
				'webhook-id': approved.request.headers['webhook-id'],
				'webhook-timestamp': String(old),
				'webhook-signature': `v1,${standardSignature(secret, approved.request.headers['webhook-id'], old, body)}`,
			},
		});
		assert.equal(replayed.answer.status, 401);
		assert.match(replayed.answer.body.error, /timestamp/);
		assert.equal(replayed.result.workflowData, undefined);
		const unsigned = await resume({ ...approved.request, headers: { 'content-type': 'application/json' } });
		assert.equal(unsigned.answer.status, 401);
		assert.equal(unsigned.result.workflowData, undefined);
	} finally {
		await n8n.close();
	}
});

test('ask for approval: a limit puts a deadline on the wait; a non-approval feed fails before posting', { skip: NO_SERVER }, async () => {
	const before = Date.now();
	const limited = executeContext({
		executionId: '3002',
		resumeUrl: 'http://127.0.0.1:9/webhook-waiting/3002/node',
		params: { operation: 'sendAndWait', feedId: env.approvalFeed, description: 'Restart the server?', metadata: '{}', approvalOptions: { limitWaitTime: 2, limitUnit: 'hours' } },
		creds: credentials(env.approvalWriteKey),
	});
	await node.execute.call(limited);
	const deadline = limited.waits[0].getTime() - before;
	assert.ok(deadline >= 2 * 3600_000 && deadline < 2 * 3600_000 + 60_000, String(deadline));

	const wrongFeed = executeContext({
		resumeUrl: 'http://127.0.0.1:9/webhook-waiting/3003/node',
		params: { operation: 'sendAndWait', feedId: env.statusFeed, description: 'Approve?', metadata: '{}', approvalOptions: {} },
		creds: credentials(env.statusWriteKey),
	});
	await assert.rejects(node.execute.call(wrongFeed), /status feed: asking for approval needs a feed of schema type "approval"/);
	assert.equal(wrongFeed.requests.filter((r) => r.options.method === 'POST').length, 0);
	assert.equal(wrongFeed.waits.length, 0);
});

test('ask for approval on an n8n without signed resume URLs uses $execution.resumeUrl and the node id', { skip: NO_SERVER }, async () => {
	const ctx = executeContext({
		executionId: '3004',
		params: { operation: 'sendAndWait', feedId: env.approvalFeed, description: 'Old n8n?', metadata: '{}', approvalOptions: {} },
		creds: credentials(env.approvalWriteKey),
	});
	ctx.evaluateExpression = (expression) => {
		assert.equal(expression, '{{ $execution.resumeUrl }}');
		return 'http://127.0.0.1:5678/webhook-waiting/3004';
	};
	await node.execute.call(ctx);
	const posted = ctx.requests.find((r) => r.options.method === 'POST');
	assert.equal(posted.options.body.callback.url, 'http://127.0.0.1:5678/webhook-waiting/3004/b3c1a2d4-0000-4000-8000-00000000a001');
});
