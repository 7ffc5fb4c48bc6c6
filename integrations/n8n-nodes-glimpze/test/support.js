// What the node tests need besides the nodes: a minimal stand-in for n8n's execution contexts
// (only what the nodes call), n8n's HTTP helper done with fetch (real calls to Glimpze), and a
// local HTTP server standing in for n8n's webhook endpoints.
'use strict';
const http = require('node:http');

/** The Glimpze server the integration tests talk to, from the environment (tests/test_n8n_node.py sets it). */
const env = {
	url: process.env.GLIMPZE_URL,
	apiKey: process.env.GLIMPZE_API_KEY,
	statusFeed: process.env.GLIMPZE_STATUS_FEED,
	statusWriteKey: process.env.GLIMPZE_STATUS_WRITE_KEY,
	approvalFeed: process.env.GLIMPZE_APPROVAL_FEED,
	approvalWriteKey: process.env.GLIMPZE_APPROVAL_WRITE_KEY,
};
const NO_SERVER = env.url ? false : 'GLIMPZE_URL is not set: run through tests/test_n8n_node.py, which starts Glimpze';

/** n8n's `helpers.httpRequest` for the options the nodes use; every call is logged. */
function httpRequest(log) {
	return async (options) => {
		const url = new URL(options.url);
		for (const [k, v] of Object.entries(options.qs ?? {})) url.searchParams.set(k, String(v));
		const headers = { ...(options.headers ?? {}) };
		let body;
		if (options.body !== undefined) {
			body = JSON.stringify(options.body);
			headers['Content-Type'] = 'application/json';
		}
		const response = await fetch(url, { method: options.method ?? 'GET', headers, body });
		const text = await response.text();
		const parsed = options.json && text ? JSON.parse(text) : text;
		const entry = { options: { ...options, headers }, statusCode: response.status, body: parsed };
		log.push(entry);
		if (!options.ignoreHttpStatusErrors && response.status >= 400) {
			throw Object.assign(new Error(`Request failed with status code ${response.status}`), { httpCode: String(response.status) });
		}
		return options.returnFullResponse
			? { statusCode: response.status, headers: Object.fromEntries(response.headers), body: parsed }
			: parsed;
	};
}

/**
 * `getNodeParameter` over a plain object; dotted names ("options.idempotencyKey") reach into
 * collections. Execute contexts pass (name, itemIndex, fallback), the others (name, fallback).
 */
function parameterGetter(params, withItemIndex) {
	return (name, ...rest) => {
		const args = withItemIndex ? rest.slice(1) : rest;
		let value = params;
		for (const part of name.split('.')) value = value === undefined || value === null ? undefined : value[part];
		if (value !== undefined) return value;
		if (args.length === 0) throw new Error(`Could not get parameter "${name}"`);
		return args[0];
	};
}

function credentials(writeKey) {
	return { serverUrl: env.url, apiKey: env.apiKey, writeKey };
}

function baseContext({ params = {}, creds, node = {}, staticData = {} }, withItemIndex = false) {
	const log = [];
	const theNode = { id: 'b3c1a2d4-0000-4000-8000-00000000a001', name: 'Glimpze', type: 'n8n-nodes-glimpze.glimpze', typeVersion: 1, parameters: params, ...node };
	return {
		requests: log,
		getNodeParameter: parameterGetter(params, withItemIndex),
		getCredentials: async () => creds,
		getNode: () => theNode,
		getWorkflow: () => ({ id: 'wf_test', name: 'Node tests', active: true }),
		getWorkflowStaticData: () => staticData,
		logger: { debug() {}, info() {}, warn() {}, error() {} },
		helpers: { httpRequest: httpRequest(log) },
	};
}

let executions = 1000;
// One "n8n install" per test run, so that a second run against the same server sends anew.
const INSTANCE = `instance-${require('node:crypto').randomBytes(6).toString('hex')}`;

/** IExecuteFunctions, enough for the Glimpze node's execute(); each context is a new execution unless told. */
function executeContext({ items = [{ json: {} }], executionId = String(++executions), instanceId = INSTANCE, runIndex = 0, resumeUrl, ...rest }) {
	const ctx = baseContext(rest, true);
	ctx.waits = [];
	ctx.signatureRequired = false;
	Object.assign(ctx, {
		getInputData: () => items,
		getExecutionId: () => executionId,
		getInstanceId: () => instanceId,
		getWorkflowDataProxy: () => ({ $thisRunIndex: runIndex }),
		continueOnFail: () => false,
		evaluateExpression: () => resumeUrl,
		putExecutionToWait: async (date) => {
			ctx.waits.push(date);
		},
	});
	if (resumeUrl !== undefined) {
		ctx.getSignedResumeUrl = () => resumeUrl;
		ctx.setSignatureValidationRequired = () => {
			ctx.signatureRequired = true;
		};
	}
	return ctx;
}

/** IHookFunctions, enough for the trigger's webhookMethods. */
function hookContext({ webhookUrl, ...rest }) {
	const ctx = baseContext(rest);
	ctx.getNodeWebhookUrl = () => webhookUrl;
	return ctx;
}

/** IWebhookFunctions for one received request; `ctx.response` holds what the node answered itself. */
function webhookContext(request, rest) {
	const ctx = baseContext(rest);
	ctx.response = null;
	const res = {
		status(code) {
			ctx.response = { status: code, body: undefined };
			return res;
		},
		json(body) {
			ctx.response = { status: ctx.response?.status ?? 200, body };
			return res;
		},
	};
	Object.assign(ctx, {
		getRequestObject: () => ({ method: request.method, headers: request.headers, rawBody: request.rawBody, body: request.json }),
		getResponseObject: () => res,
		getHeaderData: () => request.headers,
	});
	return ctx;
}

/**
 * A local HTTP server standing in for n8n's webhook endpoint. Each request is handed to `handle`
 * (which runs the node's webhook() as n8n would) and answered with what the node decided.
 */
async function receiver(handle) {
	const received = [];
	const waiting = [];
	const server = http.createServer((req, res) => {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', async () => {
			const request = { method: req.method, url: req.url, headers: req.headers, rawBody: Buffer.concat(chunks) };
			let outcome;
			try {
				outcome = await handle(request);
			} catch (error) {
				outcome = { status: 500, body: { error: String(error) } };
			}
			res.writeHead(outcome.status, { 'Content-Type': 'application/json' });
			res.end(JSON.stringify(outcome.body ?? {}));
			const entry = { request, outcome };
			received.push(entry);
			waiting.splice(0).forEach((w) => w());
		});
	});
	await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
	const base = `http://127.0.0.1:${server.address().port}`;
	return {
		base,
		received,
		/** The `count`-th request (1-based), once it has arrived and been answered. */
		async nth(count, timeoutMs = 20000) {
			const deadline = Date.now() + timeoutMs;
			while (received.length < count) {
				if (Date.now() > deadline) throw new Error(`no request ${count} within ${timeoutMs} ms (got ${received.length})`);
				await new Promise((resolve) => {
					waiting.push(resolve);
					setTimeout(resolve, 250).unref();
				});
			}
			return received[count - 1];
		},
		close: () => new Promise((resolve) => server.close(resolve)),
	};
}

/** How n8n answers a webhook from what the node's webhook() returned. */
function n8nAnswer(ctx, result) {
	if (result.noWebhookResponse) return ctx.response;
	if (result.workflowData) return { status: 200, body: { message: 'Workflow was started' } };
	return { status: 200, body: result.webhookResponse ?? { message: 'Webhook call received' } };
}

/** A JSON call to Glimpze's /v1 API with the test's API key. */
async function api(method, path, body) {
	const response = await fetch(`${env.url}${path}`, {
		method,
		headers: { Authorization: `Bearer ${env.apiKey}`, 'Content-Type': 'application/json' },
		body: body === undefined ? undefined : JSON.stringify(body),
	});
	const text = await response.text();
	return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Ask `probe` again (every 50 ms, up to `timeoutMs`) until `done(value)`; for state Glimpze writes after answering. */
async function eventually(probe, done, timeoutMs = 10000) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const value = await probe();
		if (done(value) || Date.now() > deadline) return value;
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}

module.exports = { env, NO_SERVER, credentials, executeContext, hookContext, webhookContext, receiver, n8nAnswer, api, eventually };
