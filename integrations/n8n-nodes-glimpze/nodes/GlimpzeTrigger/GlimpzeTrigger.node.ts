import { NodeConnectionTypes } from 'n8n-workflow';
import type {
	IDataObject,
	IHookFunctions,
	INodeType,
	INodeTypeDescription,
	IWebhookFunctions,
	IWebhookResponseData,
} from 'n8n-workflow';

import { DEFAULT_TOLERANCE_SECONDS, verifyDelivery } from '../shared/signatures';
import type { Answer } from '../shared/transport';
import { credentialsOf, glimpzeRequest } from '../shared/transport';
import { nowSeconds, parseJson, rawBodyOf, refuse } from '../shared/webhookRequest';

// DESIGN §4's catalogue; "*" subscribes to every type, including ones added later.
const EVENT_TYPES = [
	['*', 'Every Event'],
	['approval.requested', 'Approval Requested'],
	['approval.responded', 'Approval Responded'],
	['feed.event', 'Feed Event'],
	['lead.captured', 'Lead Captured'],
	['message.created', 'Message Created'],
	['session.closed', 'Session Closed'],
	['session.created', 'Session Created'],
	['session.escalated', 'Session Escalated'],
	['session.updated', 'Session Updated'],
	['webhook.disabled', 'Webhook Disabled'],
	['webhook.failing', 'Webhook Failing'],
	['webhook.test', 'Webhook Test'],
];

type Stored = { webhookId?: string; secret?: string };

function stored(ctx: IHookFunctions | IWebhookFunctions): IDataObject & Stored {
	return ctx.getWorkflowStaticData('node') as IDataObject & Stored;
}

function chosenEvents(ctx: IHookFunctions): string[] {
	const events = ctx.getNodeParameter('events', []) as string[];
	return events.includes('*') ? ['*'] : [...events].sort();
}

/** The "Only Feed IDs" option as the webhook's `feed_ids` (empty: every feed). */
function chosenFeeds(ctx: IHookFunctions | IWebhookFunctions): string[] {
	const options = ctx.getNodeParameter('options', {}) as IDataObject;
	const feeds = String(options.feedIds ?? '')
		.split(',')
		.map((f) => f.trim())
		.filter(Boolean);
	return [...new Set(feeds)].sort();
}

async function webhookApi(ctx: IHookFunctions, method: 'GET' | 'POST' | 'DELETE', path: string, body?: IDataObject): Promise<Answer> {
	return await glimpzeRequest(ctx, await credentialsOf(ctx), { method, path: `/v1/webhooks${path}`, key: 'api', body });
}

function httpCodeOf(error: unknown): string | undefined {
	return (error as { httpCode?: string }).httpCode;
}

/**
 * Glimpze Trigger: starts the workflow on Glimpze's outgoing events. On activation it creates its own
 * webhook in Glimpze (POST /v1/webhooks) and keeps the webhook's id and signing secret in the node's
 * static data; on deactivation it deletes it. Every delivery's signature is checked on the raw body
 * (Standard Webhooks headers, or X-Glimpze-Signature) within a timestamp tolerance; a delivery that
 * fails is answered 401 and starts nothing.
 */
export class GlimpzeTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Glimpze Trigger',
		name: 'glimpzeTrigger',
		icon: 'file:../../icons/glimpze.svg',
		group: ['trigger'],
		version: 1,
		subtitle: '={{$parameter["events"].join(", ")}}',
		description: 'Starts the workflow when Glimpze sends an event (signed webhook)',
		defaults: { name: 'Glimpze Trigger' },
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'glimpzeApi', required: true }],
		webhooks: [{ name: 'default', httpMethod: 'POST', responseMode: 'onReceived', path: 'webhook' }],
		properties: [
			{
				displayName: 'Events',
				name: 'events',
				type: 'multiOptions',
				required: true,
				options: EVENT_TYPES.map(([value, name]) => ({ name, value })),
				default: ['feed.event'],
				description: 'The event types Glimpze sends to this workflow',
			},
			{
				displayName: 'Options',
				name: 'options',
				type: 'collection',
				placeholder: 'Add Option',
				default: {},
				options: [
					{
						displayName: 'Only Feed IDs',
						name: 'feedIds',
						type: 'string',
						default: '',
						placeholder: 'fd_abc, fd_def',
						description:
							"Comma-separated: Glimpze sends only these feeds' events (the webhook's feed_ids); events of no feed (sessions, leads, tests) still come",
					},
					{
						displayName: 'Signature Tolerance (Seconds)',
						name: 'tolerance',
						type: 'number',
						typeOptions: { minValue: 1 },
						default: DEFAULT_TOLERANCE_SECONDS,
						description: "How far a delivery's signature timestamp may be from this machine's clock",
					},
				],
			},
		],
	};

	webhookMethods = {
		default: {
			async checkExists(this: IHookFunctions): Promise<boolean> {
				const data = stored(this);
				if (!data.webhookId) return false;
				let webhook: IDataObject;
				try {
					webhook = (await webhookApi(this, 'GET', `/${encodeURIComponent(data.webhookId)}`)).body;
				} catch (error) {
					if (httpCodeOf(error) !== '404') throw error;
					delete data.webhookId;
					delete data.secret;
					return false;
				}
				const events = [...((webhook.events as string[]) ?? [])].sort();
				const feeds = [...((webhook.feed_ids as string[]) ?? [])].sort();
				if (
					webhook.url === this.getNodeWebhookUrl('default') &&
					events.join() === chosenEvents(this).join() &&
					feeds.join() === chosenFeeds(this).join()
				) {
					return true;
				}
				// Changed while inactive (URL, events or feeds): replace it rather than deliver to the old setup.
				await webhookApi(this, 'DELETE', `/${encodeURIComponent(data.webhookId)}`);
				delete data.webhookId;
				delete data.secret;
				return false;
			},

			async create(this: IHookFunctions): Promise<boolean> {
				const workflow = this.getWorkflow();
				const answer = await webhookApi(this, 'POST', '', {
					url: this.getNodeWebhookUrl('default') as string,
					events: chosenEvents(this),
					// Sent only when set: a Glimpze without feed filters still takes the node's webhook.
					...(chosenFeeds(this).length ? { feed_ids: chosenFeeds(this) } : {}),
					description: `n8n: ${workflow.name ?? workflow.id ?? 'workflow'} / ${this.getNode().name}`,
				});
				const data = stored(this);
				data.webhookId = answer.body.id as string;
				data.secret = answer.body.secret as string;
				return true;
			},

			async delete(this: IHookFunctions): Promise<boolean> {
				const data = stored(this);
				if (data.webhookId) {
					try {
						await webhookApi(this, 'DELETE', `/${encodeURIComponent(data.webhookId)}`);
					} catch (error) {
						if (httpCodeOf(error) !== '404') return false;
					}
				}
				delete data.webhookId;
				delete data.secret;
				return true;
			},
		},
	};

	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		const raw = await rawBodyOf(this);
		if (!raw) return refuse(this, 400, 'the delivery has no body');
		const options = this.getNodeParameter('options', {}) as IDataObject;
		const tolerance = Number(options.tolerance ?? DEFAULT_TOLERANCE_SECONDS);
		const verdict = verifyDelivery(this.getHeaderData(), raw, [stored(this).secret ?? ''], nowSeconds(), tolerance);
		if (!verdict.valid) return refuse(this, 401, `invalid signature: ${verdict.reason}`);
		const event = parseJson(raw);
		if (!event) return refuse(this, 400, 'the delivery is not a JSON object');
		// Glimpze filters already (feed_ids); checked again for deliveries queued before a change.
		const feeds = chosenFeeds(this);
		if (feeds.length && typeof event.feed_id === 'string' && !feeds.includes(event.feed_id)) {
			return { webhookResponse: { status: 'ignored', reason: 'feed not selected' } };
		}
		return { workflowData: [[{ json: event as IDataObject }]] };
	}
}
