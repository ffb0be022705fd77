// An after-callback worker: logs every group member change OpenIM reports.
//
// OpenIM sends callbackAfterSetGroupMemberInfoCommand once a member's nickname, avatar, role
// or `ex` has changed. With GATEWAY_AFTER_STREAM set, the gateway stores these notifications
// in a JetStream stream; this worker reads them through a durable consumer, so the changes
// made while it was stopped are logged when it starts again, each one once.
//
// Run: `node after-worker.js` (env NATS_URL, WORKER_SUBJECT_PREFIX, WORKER_CONCURRENCY,
// WORKER_LOG_LEVEL, and WORKER_AFTER_STREAM: the gateway's GATEWAY_AFTER_STREAM, default
// OPENIM_AFTER; WORKER_AFTER_DURABLE: this worker's consumer, default member-info-log).

import { pathToFileURL } from "node:url";

import * as ow from "openim-gateway-worker";

export const AFTER_SET_GROUP_MEMBER_INFO = "callbackAfterSetGroupMemberInfoCommand";
export const WORKER_AFTER_STREAM = "WORKER_AFTER_STREAM";
export const WORKER_AFTER_DURABLE = "WORKER_AFTER_DURABLE";
export const DEFAULT_STREAM = "OPENIM_AFTER";
export const DEFAULT_DURABLE = "member-info-log";
const CHANGE_FIELDS = ["nickName", "faceURL", "roleLevel", "ex"];

/** One line for a change: the group, the member and the fields OpenIM reports (a null field
 * did not change). */
export function describe(body) {
  const changes = CHANGE_FIELDS.filter((name) => body[name] !== null && body[name] !== undefined)
    .map((name) => `${name}=${JSON.stringify(body[name])}`)
    .join(" ");
  return `group=${JSON.stringify(body.groupID)} user=${JSON.stringify(body.userID)} ${changes || "(no field reported)"}`;
}

export function onMemberInfoChanged(command, body, headers) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new ow.BadRequest("body is not a JSON object");
  }
  ow.log.info(`member info changed: ${describe(body)} request_id=${headers[ow.HEADER_REQUEST_ID] ?? "-"}`);
}

export const PROGRAM = "openim-after-worker-node";
export const VARIABLES = [WORKER_AFTER_STREAM, WORKER_AFTER_DURABLE];

export async function main(env = process.env) {
  // Every problem at once, each line prefixed by the program's name; exit code 2.
  const { values, problems } = ow.collectSettings([
    () => ow.parseNameSetting(env, WORKER_AFTER_STREAM, DEFAULT_STREAM),
    () => ow.parseNameSetting(env, WORKER_AFTER_DURABLE, DEFAULT_DURABLE),
  ]);
  problems.unshift(...ow.settingsProblems(env, { variables: VARIABLES }));
  if (problems.length) {
    ow.reportProblems(PROGRAM, problems);
    return ow.EXIT_BAD_SETTINGS;
  }
  const [stream, durable] = values;
  return ow.runAfterStream({
    stream,
    durable,
    handler: onMemberInfoChanged,
    commands: [AFTER_SET_GROUP_MEMBER_INFO],
    name: PROGRAM,
    env,
    variables: VARIABLES,
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  // exit() rather than exitCode: a connection attempt still retrying would keep Node running.
  process.exit(await main());
}
