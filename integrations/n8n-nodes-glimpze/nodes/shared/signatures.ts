/**
 * Verifying Glimpze's signed requests: webhook deliveries and approval callbacks (DESIGN §4).
 *
 * Glimpze signs every delivery twice, with the same secret (`whsec_…`):
 * - `X-Glimpze-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret's UTF-8 bytes, "{t}.{raw body}")>`;
 * - Standard Webhooks: `webhook-id`, `webhook-timestamp` and
 *   `webhook-signature: v1,<base64 HMAC-SHA256(base64-decoded secret minus "whsec_", "{id}.{t}.{raw body}")>`.
 * During a secret rotation each header carries one signature per secret; any one matching is enough.
 * The body must be the raw bytes received: re-serialised JSON is not what was signed.
 */
import { createHmac, timingSafeEqual } from 'crypto';

export const SECRET_PREFIX = 'whsec_';
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** Header names as Node.js hands them over (lower case); values may be arrays for repeated headers. */
export type Headers = Record<string, string | string[] | undefined>;

export type Verdict = { valid: true; scheme: 'standard-webhooks' | 'glimpze' } | { valid: false; reason: string };

const encoder = new TextEncoder();

function header(headers: Headers, name: string): string | undefined {
	const value = headers[name.toLowerCase()];
	return Array.isArray(value) ? value[0] : value;
}

function base64Bytes(text: string): Uint8Array {
	const binary = atob(text);
	const bytes = new Uint8Array(binary.length);
	for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
	return bytes;
}

/** Constant-time equality of two ASCII signatures (false when the lengths differ). */
function sameSignature(expected: string, given: string): boolean {
	const a = encoder.encode(expected);
	const b = encoder.encode(given);
	return a.length === b.length && timingSafeEqual(a, b);
}

/** The hex `v1` value of `X-Glimpze-Signature` for `body` signed at `timestamp`. */
export function glimpzeSignature(secret: string, timestamp: number, body: Uint8Array): string {
	return createHmac('sha256', encoder.encode(secret))
		.update(`${timestamp}.`)
		.update(body)
		.digest('hex');
}

/** The base64 Standard Webhooks signature (without the `v1,` prefix). */
export function standardSignature(
	secret: string,
	messageId: string,
	timestamp: number,
	body: Uint8Array,
): string {
	const key = base64Bytes(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret);
	return createHmac('sha256', key).update(`${messageId}.${timestamp}.`).update(body).digest('base64');
}

function timestampProblem(stamp: string | undefined, now: number, tolerance: number): string | undefined {
	if (stamp === undefined || !/^\d{1,12}$/.test(stamp)) return 'the signature timestamp is missing or malformed';
	if (Math.abs(now - Number(stamp)) > tolerance) {
		return `the signature timestamp is more than ${tolerance} s away from this machine's clock`;
	}
	return undefined;
}

type Check = {
	scheme: 'standard-webhooks' | 'glimpze';
	headerName: string;
	stamp: string | undefined;
	given: string[];
	sign: (secret: string, timestamp: number) => string;
};

/** Valid when the timestamp is within the tolerance and one given signature is one secret's. */
function judge(check: Check, secrets: string[], now: number, tolerance: number): Verdict {
	const late = timestampProblem(check.stamp, now, tolerance);
	if (late) return { valid: false, reason: late };
	const timestamp = Number(check.stamp);
	const matched = secrets.some((secret) => {
		const expected = check.sign(secret, timestamp);
		return check.given.some((g) => sameSignature(expected, g));
	});
	return matched ? { valid: true, scheme: check.scheme } : { valid: false, reason: `no ${check.headerName} matches the secret` };
}

/** Check the Standard Webhooks headers. */
export function verifyStandardWebhook(
	headers: Headers,
	body: Uint8Array,
	secrets: string[],
	now: number,
	tolerance = DEFAULT_TOLERANCE_SECONDS,
): Verdict {
	const id = header(headers, 'webhook-id');
	const signatures = header(headers, 'webhook-signature');
	if (!id || !signatures) return { valid: false, reason: 'the webhook-id or webhook-signature header is missing' };
	const given = signatures
		.split(' ')
		.filter((s) => s.startsWith('v1,'))
		.map((s) => s.slice(3));
	const sign = (secret: string, t: number) => standardSignature(secret, id, t, body);
	const stamp = header(headers, 'webhook-timestamp');
	return judge({ scheme: 'standard-webhooks', headerName: 'webhook-signature', stamp, given, sign }, secrets, now, tolerance);
}

/** Check `X-Glimpze-Signature: t=…,v1=…[,v1=…]`. */
export function verifyGlimpzeSignature(
	headers: Headers,
	body: Uint8Array,
	secrets: string[],
	now: number,
	tolerance = DEFAULT_TOLERANCE_SECONDS,
): Verdict {
	const value = header(headers, 'x-glimpze-signature');
	if (!value) return { valid: false, reason: 'the X-Glimpze-Signature header is missing' };
	const parts = value.split(',').map((p) => p.trim().split('='));
	const stamp = parts.find(([k]) => k === 't')?.[1];
	const given = parts.filter(([k, v]) => k === 'v1' && v !== undefined).map(([, v]) => v);
	const sign = (secret: string, t: number) => glimpzeSignature(secret, t, body);
	return judge({ scheme: 'glimpze', headerName: 'X-Glimpze-Signature', stamp, given, sign }, secrets, now, tolerance);
}

/**
 * Verify a delivery from Glimpze: the Standard Webhooks headers when present, otherwise
 * `X-Glimpze-Signature`. `now` is in Unix seconds; `secrets` holds the current secret and, during a
 * rotation, the previous one.
 */
export function verifyDelivery(
	headers: Headers,
	body: Uint8Array,
	secrets: string[],
	now: number,
	tolerance = DEFAULT_TOLERANCE_SECONDS,
): Verdict {
	const usable = secrets.filter((s) => typeof s === 'string' && s.length > 0);
	if (usable.length === 0) return { valid: false, reason: 'no signing secret is known' };
	if (header(headers, 'webhook-signature') !== undefined) {
		return verifyStandardWebhook(headers, body, usable, now, tolerance);
	}
	if (header(headers, 'x-glimpze-signature') !== undefined) {
		return verifyGlimpzeSignature(headers, body, usable, now, tolerance);
	}
	return { valid: false, reason: 'the request carries no Glimpze signature' };
}
