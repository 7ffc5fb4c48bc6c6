import { NodeConnectionTypes, NodeOperationError } from 'n8n-workflow';
import type {
	IDataObject,
	IExecuteFunctions,
	INodeExecutionData,
	INodeType,
	INodeTypeDescription,
	IWebhookFunctions,
	IWebhookResponseData,
} from 'n8n-workflow';

import { credentialsOf } from '../shared/transport';
import { askForApproval, approvalCallback } from './approval';
import { ASK_FOR_APPROVAL, properties } from './description';
import { closeSession, createSession, sendEvent } from './operations';

const PER_ITEM: Record<string, typeof sendEvent> = { sendEvent, createSession, closeSession };

/** Glimpze: send widget events, ask for approval and wait for the answer, open and close sessions. */
export class Glimpze implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Glimpze',
		name: 'glimpze',
		icon: 'file:../../icons/glimpze.svg',
		group: ['output'],
		version: 1,
		subtitle: '={{$parameter["operation"]}}',
		description: 'Send events to Glimpze widgets, ask for approvals and manage sessions',
		defaults: { name: 'Glimpze' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'glimpzeApi', required: true }],
		// The resume URL of "Ask for approval and wait": only a waiting execution listens on it.
		webhooks: [
			{
				name: 'default',
				httpMethod: 'POST',
				responseMode: 'onReceived',
				responseData: '',
				path: '={{ $nodeId }}',
				restartWebhook: true,
				isFullPath: true,
			},
		],
		properties,
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const operation = this.getNodeParameter('operation', 0) as string;
		const creds = await credentialsOf(this);
		if (operation === ASK_FOR_APPROVAL) return await askForApproval(this, creds);
		const run = PER_ITEM[operation];
		if (!run) throw new NodeOperationError(this.getNode(), `Unknown operation: ${operation}`);
		const items = this.getInputData();
		const out: INodeExecutionData[] = [];
		for (let i = 0; i < items.length; i++) {
			try {
				out.push({ json: await run(this, creds, i), pairedItem: { item: i } });
			} catch (error) {
				if (!this.continueOnFail()) throw error;
				out.push({ json: { error: (error as Error).message } as IDataObject, pairedItem: { item: i } });
			}
		}
		return [out];
	}

	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		return await approvalCallback(this);
	}
}
