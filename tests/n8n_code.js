// Runs the JavaScript of an n8n Code node ("Run Once for All Items") as n8n does, for the
// examples' tests: reads {code, items, workflow, execution} as JSON on stdin and prints
// {"items": [...]} or {"error": "..."}. The code gets n8n's names ($input, items, $json,
// $workflow, $execution, this.helpers.getBinaryDataBuffer) and a require() that, like n8n's,
// allows only the built-in modules NODE_FUNCTION_ALLOW_BUILTIN lists.
'use strict';

const allowed = (process.env.NODE_FUNCTION_ALLOW_BUILTIN || '').split(',').map((m) => m.trim()).filter(Boolean);

function sandboxRequire(name) {
	if (!allowed.includes('*') && !allowed.includes(name)) {
		throw new Error(`Cannot find module '${name}' [not allowed: set NODE_FUNCTION_ALLOW_BUILTIN]`);
	}
	return require(name);
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', async () => {
	const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
	const items = input.items;
	const $input = { all: () => items, first: () => items[0], last: () => items[items.length - 1] };
	const helpers = {
		async getBinaryDataBuffer(index, property) {
			return Buffer.from(items[index].binary[property].data, 'base64');
		},
	};
	const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
	const names = ['$input', 'items', '$json', '$workflow', '$execution', 'require'];
	try {
		const run = new AsyncFunction(...names, input.code);
		const out = await run.call({ helpers }, $input, items, items[0] && items[0].json, input.workflow, input.execution, sandboxRequire);
		process.stdout.write(JSON.stringify({ items: out }));
	} catch (error) {
		process.stdout.write(JSON.stringify({ error: String(error && error.message) }));
	}
});
