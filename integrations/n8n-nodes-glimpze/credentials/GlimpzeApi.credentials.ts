import type {
	IAuthenticateGeneric,
	Icon,
	ICredentialTestRequest,
	ICredentialType,
	INodeProperties,
} from 'n8n-workflow';

/**
 * Where a Glimpze server is and the keys to talk to it: a project API key for `/v1` (sessions,
 * webhooks, approval callback secrets) and a feed's write key for `/ingest/{feed}` (events).
 */
export class GlimpzeApi implements ICredentialType {
	name = 'glimpzeApi';

	displayName = 'Glimpze API';

	icon: Icon = 'file:../icons/glimpze.svg';

	properties: INodeProperties[] = [
		{
			displayName: 'Server URL',
			name: 'serverUrl',
			type: 'string',
			default: '',
			placeholder: 'http://pi.local:8080',
			description: "The Glimpze server's address as n8n reaches it (its public_url)",
			required: true,
		},
		{
			displayName: 'API Key',
			name: 'apiKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			placeholder: 'gzp_…',
			description:
				'A project API key (glimpze keys create). Needed for sessions, the trigger and for verifying approval callbacks.',
		},
		{
			displayName: 'Feed Write Key',
			name: 'writeKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			placeholder: 'gzw_…',
			description:
				'The write key of the feed that Send Event and Ask for Approval post to (shown once when the feed is created)',
		},
	];

	// /v1 takes the API key as a Bearer token; the test below uses it (the nodes set their own header).
	authenticate: IAuthenticateGeneric = {
		type: 'generic',
		properties: {
			headers: {
				Authorization: '=Bearer {{$credentials.apiKey}}',
			},
		},
	};

	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{$credentials.serverUrl.replace(/\\/+$/, "")}}',
			url: '/v1/feeds',
			qs: { limit: 1 },
			method: 'GET',
		},
	};
}
