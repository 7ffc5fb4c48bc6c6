// The Glimpze Trigger against a real Glimpze server: its webhook methods (activation and
// deactivation) and its webhook() on real, signed deliveries.
'use strict';
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { Glimpze } = require('../dist/nodes/Glimpze/Glimpze.node.js');
const { GlimpzeTrigger } = require('../dist/nodes/GlimpzeTrigger/GlimpzeTrigger.node.js');
const { env, NO_SERVER, credentials, executeContext, hookContext, webhookContext, receiver, n8nAnswer, api, eventually } = require('./support.js');

const trigger = new GlimpzeTrigger();
const methods = trigger.webhookMethods.default;

/** A stand-in for n8n's webhook endpoint that runs the trigger's webhook() on each delivery. */
async function n8nFor(params, staticData, started) {
	return await receiver(async (request) => {
		const ctx = webhookContext(request, { params, creds: credentials(), staticData, node: { name: 'Glimpze Trigger' } });
		const result = await trigger.webhook.call(ctx);
		started.push(result);
		return n8nAnswer(ctx, result);
	});
}

async function deliver(request, params, staticData) {
	const ctx = webhookContext(request, { params, creds: credentials(), staticData });
	const result = await trigger.webhook.call(ctx);
	return { result, answer: n8nAnswer(ctx, result) };
}

test('trigger: activation creates its webhook, signed deliveries start the workflow, deactivation deletes it', { skip: NO_SERVER }, async () => {
	const params = { events: ['webhook.test', 'feed.event'], options: {} };
	const staticData = {};
	const started = [];
	const n8n = await n8nFor(params, staticData, started);
	try {
		const webhookUrl = `${n8n.base}/webhook/7c0e9a52-1111-4000-8000-00000000b001/webhook`;
		const hooks = hookContext({ webhookUrl, params, creds: credentials(), staticData, node: { name: 'Glimpze Trigger' } });

		assert.equal(await methods.checkExists.call(hooks), false);
		assert.equal(await methods.create.call(hooks), true);
		assert.match(staticData.webhookId, /^wh_/);
		assert.match(staticData.secret, /^whsec_/);
		const created = await api('GET', `/v1/webhooks/${staticData.webhookId}`);
		assert.equal(created.body.url, webhookUrl);
		assert.deepEqual([...created.body.events].sort(), ['feed.event', 'webhook.test']);
		assert.match(created.body.description, /Glimpze Trigger/);
		assert.equal(await methods.checkExists.call(hooks), true);

		assert.equal((await api('POST', `/v1/webhooks/${staticData.webhookId}/test`)).status, 200);
		const test1 = await n8n.nth(1);
		assert.equal(test1.outcome.status, 200);
		const [[testEvent]] = started[0].workflowData;
		assert.equal(testEvent.json.event, 'webhook.test');
		assert.equal(testEvent.json.webhook_id, staticData.webhookId);

		// An event sent by the Glimpze node reaches the trigger as feed.event.
		const send = executeContext({
			params: { operation: 'sendEvent', feedId: env.statusFeed, defineEvent: 'fields', schemaType: 'status', title: 'Disk', status: 'warning', message: '91 %', metadata: '{}', updateWidget: true, sendPush: false, options: {} },
			creds: credentials(env.statusWriteKey),
		});
		const [[sent]] = await new Glimpze().execute.call(send);
		const feedEvent = await n8n.nth(2);
		const [[event]] = started[1].workflowData;
		assert.equal(event.json.event, 'feed.event');
		assert.equal(event.json.id, sent.json.id);
		assert.equal(event.json.feed_id, env.statusFeed);
		assert.deepEqual(event.json.content, { title: 'Disk', status: 'warning', message: '91 %' });

		// A delivery whose body was changed on the way starts nothing and is answered 401.
		const tampered = { ...feedEvent.request, rawBody: Buffer.from(feedEvent.request.rawBody.toString().replace('91 %', '12 %')) };
		const refused = await deliver(tampered, params, staticData);
		assert.equal(refused.answer.status, 401);
		assert.match(refused.answer.body.error, /invalid signature/);
		assert.equal(refused.result.workflowData, undefined);
		// Nor does one signed with the X-Glimpze-Signature header alone when that one is wrong.
		const signature = feedEvent.request.headers['x-glimpze-signature'];
		const wrong = signature.slice(0, -1) + (signature.endsWith('0') ? '1' : '0');
		const glimpzeOnly = { ...feedEvent.request, headers: { 'x-glimpze-signature': wrong } };
		assert.equal((await deliver(glimpzeOnly, params, staticData)).answer.status, 401);
		const glimpzeGood = { ...feedEvent.request, headers: { 'x-glimpze-signature': feedEvent.request.headers['x-glimpze-signature'] } };
		assert.ok((await deliver(glimpzeGood, params, staticData)).result.workflowData);
		// A trigger that never created a webhook has no secret: it verifies nothing.
		assert.equal((await deliver(feedEvent.request, params, {})).answer.status, 401);
		// With a feed filter, another feed's event is answered 200 and starts nothing.
		const filtered = await deliver(feedEvent.request, { ...params, options: { feedIds: 'fd_elsewhere, fd_other' } }, staticData);
		assert.equal(filtered.answer.status, 200);
		assert.equal(filtered.result.workflowData, undefined);
		const selected = await deliver(feedEvent.request, { ...params, options: { feedIds: `fd_other,${env.statusFeed}` } }, staticData);
		assert.ok(selected.result.workflowData);

		// Glimpze records each outcome just after the answer: wait for both to be written.
		const statuses = await eventually(
			async () => (await api('GET', `/v1/webhooks/${staticData.webhookId}/deliveries`)).body.data.map((d) => d.status),
			(s) => s.length === 2 && s.every((x) => x !== 'pending'),
		);
		assert.deepEqual(statuses, ['delivered', 'delivered']);

		const id = staticData.webhookId;
		assert.equal(await methods.delete.call(hooks), true);
		assert.equal((await api('GET', `/v1/webhooks/${id}`)).status, 404);
		assert.deepEqual(staticData, {});
		assert.equal(await methods.checkExists.call(hooks), false);
		assert.equal(await methods.delete.call(hooks), true, 'deleting twice is fine');
	} finally {
		await n8n.close();
	}
});

test('trigger: a webhook changed or deleted while the workflow was inactive is made anew', { skip: NO_SERVER }, async () => {
	const staticData = {};
	const webhookUrl = 'http://127.0.0.1:9/webhook/7c0e9a52-2222-4000-8000-00000000b002/webhook';
	const hooks = (events) => hookContext({ webhookUrl, params: { events, options: {} }, creds: credentials(), staticData });

	assert.equal(await methods.create.call(hooks(['session.created'])), true);
	const first = staticData.webhookId;
	assert.equal(await methods.checkExists.call(hooks(['session.created'])), true);
	// The events were changed in the editor: the old webhook goes, create() makes the new one.
	assert.equal(await methods.checkExists.call(hooks(['*'])), false);
	assert.equal((await api('GET', `/v1/webhooks/${first}`)).status, 404);
	assert.equal(await methods.create.call(hooks(['*', 'lead.captured'])), true);
	assert.deepEqual((await api('GET', `/v1/webhooks/${staticData.webhookId}`)).body.events, ['*']);
	// Deleted in Glimpze's dashboard: checkExists() notices and forgets it.
	assert.equal((await api('DELETE', `/v1/webhooks/${staticData.webhookId}`)).status, 204);
	assert.equal(await methods.checkExists.call(hooks(['*'])), false);
	assert.deepEqual(staticData, {});
});

test('trigger: the Only Feed IDs option becomes the webhook\'s feed_ids; Glimpze sends only those feeds\' events', { skip: NO_SERVER }, async () => {
	const params = (feedIds) => ({ events: ['feed.event', 'webhook.test'], options: feedIds === undefined ? {} : { feedIds } });
	const staticData = {};
	const started = [];
	const n8n = await n8nFor(params(env.approvalFeed), staticData, started);
	try {
		const webhookUrl = `${n8n.base}/webhook/7c0e9a52-3333-4000-8000-00000000b003/webhook`;
		const hooks = (feedIds) => hookContext({ webhookUrl, params: params(feedIds), creds: credentials(), staticData });
		assert.equal(await methods.create.call(hooks(` ${env.approvalFeed} ,${env.approvalFeed}`)), true);
		const created = await api('GET', `/v1/webhooks/${staticData.webhookId}`);
		assert.deepEqual(created.body.feed_ids, [env.approvalFeed]);
		assert.equal(await methods.checkExists.call(hooks(env.approvalFeed)), true);

		// An event of another feed is not sent at all; one of the chosen feed is, and a test still comes.
		const send = async (feedId, writeKey, body) => {
			const response = await fetch(`${env.url}/ingest/${feedId}`, {
				method: 'POST',
				headers: { Authorization: `Bearer ${writeKey}`, 'Content-Type': 'application/json' },
				body: JSON.stringify(body),
			});
			const answer = await response.json();
			assert.equal(response.status, 202, JSON.stringify(answer));
			return answer;
		};
		await send(env.statusFeed, env.statusWriteKey, { schema_type: 'status', content: { title: 'Not for it', status: 'success', message: 'fine' } });
		const sent = await send(env.approvalFeed, env.approvalWriteKey, { schema_type: 'approval', content: { description: 'Deploy?' } });
		assert.equal((await api('POST', `/v1/webhooks/${staticData.webhookId}/test`)).status, 200);
		await n8n.nth(2);
		const got = started.map((r) => r.workflowData[0][0].json);
		assert.deepEqual(got.map((e) => e.event).sort(), ['feed.event', 'webhook.test']);
		assert.equal(got.find((e) => e.event === 'feed.event').id, sent.id);
		const deliveries = (await api('GET', `/v1/webhooks/${staticData.webhookId}/deliveries`)).body.data;
		assert.equal(deliveries.length, 2, 'the other feed\'s event was never queued for this webhook');

		// The option changed while inactive: the webhook is made anew with the new feeds.
		const first = staticData.webhookId;
		assert.equal(await methods.checkExists.call(hooks(undefined)), false);
		assert.equal((await api('GET', `/v1/webhooks/${first}`)).status, 404);
		assert.equal(await methods.create.call(hooks(undefined)), true);
		assert.deepEqual((await api('GET', `/v1/webhooks/${staticData.webhookId}`)).body.feed_ids, []);
		assert.equal(await methods.delete.call(hooks(undefined)), true);
	} finally {
		await n8n.close();
	}
});
