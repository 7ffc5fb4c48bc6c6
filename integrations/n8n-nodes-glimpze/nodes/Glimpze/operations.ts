/**
 * The Glimpze node's immediate operations: Send Event (POST /ingest/{feed}), Create Session and
 * Close Session (/v1/sessions). Each handles one input item and returns Glimpze's answer as JSON.
 */
import { NodeOperationError } from 'n8n-workflow';
import type { IDataObject, IExecuteFunctions } from 'n8n-workflow';

import type { GlimpzeCredentials } from '../shared/transport';
import { glimpzeRequest, itemIdempotencyKey } from '../shared/transport';

/** A JSON parameter as an object: n8n hands over a string or an already parsed value. */
export function jsonObject(ctx: IExecuteFunctions, name: string, itemIndex: number, value: unknown): IDataObject {
	let parsed = value;
	if (typeof value === 'string') {
		if (value.trim() === '') return {};
		try {
			parsed = JSON.parse(value);
		} catch (error) {
			throw new NodeOperationError(ctx.getNode(), `${name} is not valid JSON: ${(error as Error).message}`, {
				itemIndex,
			});
		}
	}
	if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
		throw new NodeOperationError(ctx.getNode(), `${name} must be a JSON object`, { itemIndex });
	}
	return parsed as IDataObject;
}

/** Only the fields that were filled in (Glimpze refuses empty strings where it wants a value). */
function filled(fields: IDataObject): IDataObject {
	return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== '' && v !== undefined && v !== null));
}

/** The ingest body of item `i`, from the fields or the JSON parameter. */
export function eventBody(ctx: IExecuteFunctions, i: number): IDataObject {
	const param = (name: string, fallback: unknown = '') => ctx.getNodeParameter(name, i, fallback);
	if (param('defineEvent', 'fields') === 'json') {
		return jsonObject(ctx, 'Event (JSON)', i, param('eventJson', '{}'));
	}
	const schemaType = param('schemaType', 'status') as string;
	const title = param('title');
	let content: IDataObject;
	if (schemaType === 'summary') {
		content = filled({ title, primary_value: param('primaryValue'), secondary_value: param('secondaryValue') });
	} else if (schemaType === 'counter') {
		content = filled({ title, count: param('count'), ...(param('counterFields', {}) as IDataObject) });
	} else {
		content = filled({ title, status: param('status', 'info'), message: param('message'), details: param('details') });
	}
	return {
		schema_type: schemaType,
		content,
		metadata: jsonObject(ctx, 'Metadata (JSON)', i, param('metadata', '{}')),
		intent: { update_widget: param('updateWidget', true) as boolean, send_push: param('sendPush', false) as boolean },
	};
}

/** The Idempotency-Key for item `i`: the one given in the options, else the derived one. */
export function keyOfItem(ctx: IExecuteFunctions, i: number, optionsName: string): string {
	const given = ctx.getNodeParameter(`${optionsName}.idempotencyKey`, i, '') as string;
	return given.trim() || itemIdempotencyKey(ctx, i);
}

export async function sendEvent(ctx: IExecuteFunctions, creds: GlimpzeCredentials, i: number): Promise<IDataObject> {
	const feedId = String(ctx.getNodeParameter('feedId', i) ?? '').trim();
	const answer = await glimpzeRequest(
		ctx,
		creds,
		{
			method: 'POST',
			path: `/ingest/${encodeURIComponent(feedId)}`,
			key: 'write',
			body: eventBody(ctx, i),
			idempotencyKey: keyOfItem(ctx, i, 'options'),
		},
		i,
	);
	return answer.body;
}

export async function createSession(ctx: IExecuteFunctions, creds: GlimpzeCredentials, i: number): Promise<IDataObject> {
	const fields = ctx.getNodeParameter('sessionFields', i, {}) as IDataObject;
	const labels = typeof fields.labels === 'string' ? fields.labels.split(',').map((l) => l.trim()).filter(Boolean) : [];
	const body = filled({
		visitor: filled({ id: ctx.getNodeParameter('visitorId', i), name: fields.visitorName, email: fields.visitorEmail }),
		agent_id: fields.agentId,
		labels: labels.length ? labels : undefined,
		priority: fields.priority,
		team: fields.team,
		assignee: fields.assignee,
		page_url: fields.pageUrl,
		language: fields.language,
		context: fields.context === undefined ? undefined : jsonObject(ctx, 'Context (JSON)', i, fields.context),
	});
	const given = typeof fields.idempotencyKey === 'string' ? fields.idempotencyKey.trim() : '';
	const answer = await glimpzeRequest(
		ctx,
		creds,
		{ method: 'POST', path: '/v1/sessions', key: 'api', body, idempotencyKey: given || itemIdempotencyKey(ctx, i) },
		i,
	);
	return answer.body;
}

export async function closeSession(ctx: IExecuteFunctions, creds: GlimpzeCredentials, i: number): Promise<IDataObject> {
	const sessionId = String(ctx.getNodeParameter('sessionId', i) ?? '').trim();
	const resolution = String(ctx.getNodeParameter('resolution', i, '') ?? '').trim();
	const answer = await glimpzeRequest(
		ctx,
		creds,
		{
			method: 'POST',
			path: `/v1/sessions/${encodeURIComponent(sessionId)}/close`,
			key: 'api',
			body: resolution ? { resolution } : {},
		},
		i,
	);
	return answer.body;
}
