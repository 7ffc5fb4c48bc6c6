// Copies what tsc does not emit (icons, codex files) into dist/, beside the compiled nodes.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const ASSET = /\.(svg|png|node\.json)$/;

function copyAssets(from, to) {
	for (const entry of fs.readdirSync(from, { withFileTypes: true })) {
		const source = path.join(from, entry.name);
		const target = path.join(to, entry.name);
		if (entry.isDirectory()) {
			copyAssets(source, target);
		} else if (ASSET.test(entry.name)) {
			fs.mkdirSync(to, { recursive: true });
			fs.copyFileSync(source, target);
		}
	}
}

for (const dir of ['nodes', 'credentials', 'icons']) {
	if (fs.existsSync(path.join(root, dir))) copyAssets(path.join(root, dir), path.join(root, 'dist', dir));
}
