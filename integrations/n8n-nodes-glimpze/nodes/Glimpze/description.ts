/** The Glimpze node's parameters, per operation (what the editor shows). */
import { SEND_AND_WAIT_OPERATION } from 'n8n-workflow';
import type { INodeProperties } from 'n8n-workflow';

// n8n checks the signed resume URL's token only for an operation of this exact name.
export const ASK_FOR_APPROVAL = SEND_AND_WAIT_OPERATION;

const show = (...operation: string[]) => ({ show: { operation } });
const showFields = (schemaType: string[]) => ({
	show: { operation: ['sendEvent'], defineEvent: ['fields'], schemaType },
});

export const operationProperty: INodeProperties = {
	displayName: 'Operation',
	name: 'operation',
	type: 'options',
	noDataExpression: true,
	options: [
		{
			name: 'Send Event',
			value: 'sendEvent',
			action: 'Send an event to a feed',
			description: 'Update a widget (summary, status, counter, custom) through POST /ingest/{feed}',
		},
		{
			name: 'Ask for Approval and Wait',
			value: ASK_FOR_APPROVAL,
			action: 'Ask for approval and wait',
			description: "Post an approval and pause the execution until it is approved or rejected in Glimpze",
		},
		{
			name: 'Create Session',
			value: 'createSession',
			action: 'Create a session',
			description: 'Open a conversation (POST /v1/sessions)',
		},
		{
			name: 'Close Session',
			value: 'closeSession',
			action: 'Close a session',
			description: 'Resolve a conversation (POST /v1/sessions/{id}/close)',
		},
	],
	default: 'sendEvent',
};

const idempotencyOption: INodeProperties = {
	displayName: 'Idempotency Key',
	name: 'idempotencyKey',
	type: 'string',
	default: '',
	description:
		"Leave empty to derive one from this n8n instance, the execution, the node and the item, so that Retry On Fail never sends twice. Don't use time expressions such as $now here.",
};

const eventProperties: INodeProperties[] = [
	{
		displayName: 'Feed ID',
		name: 'feedId',
		type: 'string',
		required: true,
		default: '',
		placeholder: 'fd_…',
		description: 'The feed to post to; the credential must hold its write key',
		displayOptions: show('sendEvent', ASK_FOR_APPROVAL),
	},
	{
		displayName: 'Define Event',
		name: 'defineEvent',
		type: 'options',
		noDataExpression: true,
		options: [
			{ name: 'Using Fields Below', value: 'fields' },
			{ name: 'Using JSON', value: 'json' },
		],
		default: 'fields',
		displayOptions: show('sendEvent'),
	},
	{
		displayName: 'Event (JSON)',
		name: 'eventJson',
		type: 'json',
		default: '{\n  "schema_type": "status",\n  "content": {"title": "Backup", "status": "success", "message": "Done"}\n}',
		description: 'The whole event as Glimpze takes it: schema_type, content, metadata, intent',
		displayOptions: { show: { operation: ['sendEvent'], defineEvent: ['json'] } },
	},
	{
		displayName: 'Schema Type',
		name: 'schemaType',
		type: 'options',
		options: [
			{ name: 'Summary', value: 'summary', description: 'A title, a primary value and an optional secondary value' },
			{ name: 'Status', value: 'status', description: 'Success, warning, info or error with a message' },
			{ name: 'Counter', value: 'counter', description: 'A number with a unit and a trend' },
		],
		default: 'status',
		description: "Must match the feed's schema type (custom feeds: use JSON)",
		displayOptions: { show: { operation: ['sendEvent'], defineEvent: ['fields'] } },
	},
	{
		displayName: 'Title',
		name: 'title',
		type: 'string',
		required: true,
		default: '',
		displayOptions: { show: { operation: ['sendEvent'], defineEvent: ['fields'] } },
	},
	{
		displayName: 'Primary Value',
		name: 'primaryValue',
		type: 'string',
		required: true,
		default: '',
		displayOptions: showFields(['summary']),
	},
	{
		displayName: 'Secondary Value',
		name: 'secondaryValue',
		type: 'string',
		default: '',
		displayOptions: showFields(['summary']),
	},
	{
		displayName: 'Status',
		name: 'status',
		type: 'options',
		options: [
			{ name: 'Success', value: 'success' },
			{ name: 'Warning', value: 'warning' },
			{ name: 'Info', value: 'info' },
			{ name: 'Error', value: 'error' },
		],
		default: 'info',
		displayOptions: showFields(['status']),
	},
	{
		displayName: 'Message',
		name: 'message',
		type: 'string',
		required: true,
		default: '',
		displayOptions: showFields(['status']),
	},
	{
		displayName: 'Details',
		name: 'details',
		type: 'string',
		default: '',
		displayOptions: showFields(['status']),
	},
	{
		displayName: 'Count',
		name: 'count',
		type: 'string',
		required: true,
		default: '',
		placeholder: '127',
		description: 'A number, or a decimal string such as "127" or "-3.5"',
		displayOptions: showFields(['counter']),
	},
	{
		displayName: 'Counter Fields',
		name: 'counterFields',
		type: 'collection',
		placeholder: 'Add Field',
		default: {},
		displayOptions: showFields(['counter']),
		options: [
			{ displayName: 'Unit', name: 'unit', type: 'string', default: '' },
			{
				displayName: 'Trend',
				name: 'trend',
				type: 'options',
				options: [
					{ name: 'Up', value: 'up' },
					{ name: 'Down', value: 'down' },
					{ name: 'Flat', value: 'flat' },
				],
				default: 'up',
			},
			{ displayName: 'Trend Value', name: 'trendValue', type: 'string', default: '', placeholder: '+12%' },
			{
				displayName: 'Trend Semantic',
				name: 'trendSemantic',
				type: 'options',
				options: [
					{ name: 'Positive', value: 'positive' },
					{ name: 'Negative', value: 'negative' },
					{ name: 'Neutral', value: 'neutral' },
				],
				default: 'positive',
			},
			{ displayName: 'Subtitle', name: 'subtitle', type: 'string', default: '' },
		],
	},
	{
		displayName: 'Description',
		name: 'description',
		type: 'string',
		required: true,
		default: '',
		typeOptions: { rows: 3 },
		placeholder: 'Deploy v2.3.0 to production?',
		description: 'What the approver is asked',
		displayOptions: show(ASK_FOR_APPROVAL),
	},
	{
		displayName: 'Metadata (JSON)',
		name: 'metadata',
		type: 'json',
		default: '{}',
		description: 'Any JSON object (at most 8 KiB); an approval returns it in its answer',
		displayOptions: {
			show: { operation: ['sendEvent', ASK_FOR_APPROVAL] },
			hide: { defineEvent: ['json'] },
		},
	},
	{
		displayName: 'Update Widget',
		name: 'updateWidget',
		type: 'boolean',
		default: true,
		description: "Whether the event becomes the feed's widget state",
		displayOptions: { show: { operation: ['sendEvent'], defineEvent: ['fields'] } },
	},
	{
		displayName: 'Send Push',
		name: 'sendPush',
		type: 'boolean',
		default: false,
		description: "Whether to send a push notification to the project's push targets",
		displayOptions: { show: { operation: ['sendEvent'], defineEvent: ['fields'] } },
	},
	{
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: show('sendEvent'),
		options: [idempotencyOption],
	},
	{
		displayName:
			"The execution waits until the approval is approved or rejected in Glimpze. A defer keeps it waiting. Glimpze must reach n8n's WEBHOOK_URL.",
		name: 'approvalNotice',
		type: 'notice',
		default: '',
		displayOptions: show(ASK_FOR_APPROVAL),
	},
	{
		displayName: 'Options',
		name: 'approvalOptions',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: show(ASK_FOR_APPROVAL),
		options: [
			{
				displayName: 'Limit Wait Time',
				name: 'limitWaitTime',
				type: 'number',
				typeOptions: { minValue: 0 },
				default: 0,
				description: 'Give up waiting after this long (0: wait until answered); the execution then goes on with the input item',
			},
			{
				displayName: 'Limit Unit',
				name: 'limitUnit',
				type: 'options',
				options: [
					{ name: 'Minutes', value: 'minutes' },
					{ name: 'Hours', value: 'hours' },
					{ name: 'Days', value: 'days' },
				],
				default: 'hours',
			},
			{
				...idempotencyOption,
				description:
					'Leave empty to derive one from this n8n instance, the execution and the node, so that Retry On Fail never posts the approval twice',
			},
		],
	},
];

const sessionProperties: INodeProperties[] = [
	{
		displayName: 'Visitor ID',
		name: 'visitorId',
		type: 'string',
		required: true,
		default: '',
		description: "Your site's own identifier for the person",
		displayOptions: show('createSession'),
	},
	{
		displayName: 'Additional Fields',
		name: 'sessionFields',
		type: 'collection',
		placeholder: 'Add Field',
		default: {},
		displayOptions: show('createSession'),
		options: [
			{ displayName: 'Agent ID', name: 'agentId', type: 'string', default: '', placeholder: 'agt_…' },
			{ displayName: 'Assignee', name: 'assignee', type: 'string', default: '' },
			{ displayName: 'Context (JSON)', name: 'context', type: 'json', default: '{}' },
			{ displayName: 'Labels', name: 'labels', type: 'string', default: '', description: 'Comma-separated' },
			{ displayName: 'Language', name: 'language', type: 'string', default: '', placeholder: 'en-GB' },
			{ displayName: 'Page URL', name: 'pageUrl', type: 'string', default: '' },
			{
				displayName: 'Priority',
				name: 'priority',
				type: 'options',
				options: [
					{ name: 'Low', value: 'low' },
					{ name: 'Normal', value: 'normal' },
					{ name: 'High', value: 'high' },
					{ name: 'Urgent', value: 'urgent' },
				],
				default: 'normal',
			},
			{ displayName: 'Team', name: 'team', type: 'string', default: '' },
			{ displayName: 'Visitor Email', name: 'visitorEmail', type: 'string', placeholder: 'name@email.com', default: '' },
			{ displayName: 'Visitor Name', name: 'visitorName', type: 'string', default: '' },
			idempotencyOption,
		],
	},
	{
		displayName: 'Session ID',
		name: 'sessionId',
		type: 'string',
		required: true,
		default: '',
		placeholder: 'ses_…',
		displayOptions: show('closeSession'),
	},
	{
		displayName: 'Resolution',
		name: 'resolution',
		type: 'string',
		default: '',
		description: 'How the conversation ended (optional)',
		displayOptions: show('closeSession'),
	},
];

export const properties: INodeProperties[] = [operationProperty, ...eventProperties, ...sessionProperties];
