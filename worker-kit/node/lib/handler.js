"use strict";

// One message without NATS: the body read as OpenIM writes it, the command's request typed,
// the handler run, and the outcome turned into a reply or a service error (400, 500).

const { BEFORE_SET_GROUP_MEMBER_INFO, HEADER_SERVICE_ERROR, HEADER_SERVICE_ERROR_CODE } = require("./names.js");
const { INT32_MIN, INT32_MAX, Decision } = require("./answer.js");
const { log } = require("./log.js");

// --- Requests --------------------------------------------------------------------------------

/** The body is not the command's request. The message goes in a header: never quote the body. */
class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.name = "BadRequest";
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Strict JSON as OpenIM writes it: UTF-8, nothing after the value. */
function parseJson(payload) {
  try {
    const text = typeof payload === "string" ? payload : utf8.decode(payload);
    return JSON.parse(text);
  } catch {
    throw new BadRequest("body is not valid JSON");
  }
}

const KIND_NAMES = { string: "a string", int32: "a 32-bit integer" };

function field(obj, command, name, kind, required) {
  if (!Object.hasOwn(obj, name)) {
    if (required) throw new BadRequest(`body is not a ${command} request (missing ${name})`);
    return null;
  }
  const value = obj[name];
  if (value === null && !required) return null;
  if (kind === "string" && typeof value === "string") return value;
  // JSON.parse reads 60.0 as 60, so unlike the Rust worker this accepts an integral float.
  if (kind === "int32" && Number.isInteger(value) && value >= INT32_MIN && value <= INT32_MAX) return value;
  throw new BadRequest(`body is not a ${command} request (${name} must be ${KIND_NAMES[kind]})`);
}

/**
 * callbackBeforeSetGroupMemberInfoCommand, with OpenIM's field names. `null` means "not
 * changing"; `""` is a value (clearing the nickname or the avatar).
 */
function parseSetGroupMemberInfoRequest(obj) {
  const command = BEFORE_SET_GROUP_MEMBER_INFO;
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new BadRequest(`body is not a ${command} request (not a JSON object)`);
  }
  return Object.freeze({
    callbackCommand: field(obj, command, "callbackCommand", "string", true),
    groupID: field(obj, command, "groupID", "string", true),
    userID: field(obj, command, "userID", "string", true),
    nickName: field(obj, command, "nickName", "string", false),
    faceURL: field(obj, command, "faceURL", "string", false),
    roleLevel: field(obj, command, "roleLevel", "int32", false),
    ex: field(obj, command, "ex", "string", false),
  });
}

/** The parser for commands without a typed request: any JSON object. */
function jsonObject(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new BadRequest("body is not a JSON object");
  }
  return obj;
}

/** Typed requests per command; other commands get the JSON object. */
const REQUEST_TYPES = { [BEFORE_SET_GROUP_MEMBER_INFO]: parseSetGroupMemberInfoRequest };

// --- One message, without NATS ---------------------------------------------------------------

const encoder = new TextEncoder();

function serviceError(code, description) {
  // A header value cannot hold a line break.
  const oneLine = description.replace(/[\r\n]+/g, " ");
  return {
    body: new Uint8Array(0),
    headers: { [HEADER_SERVICE_ERROR]: oneLine, [HEADER_SERVICE_ERROR_CODE]: code },
    decision: null,
  };
}

/** Parses the body, runs the handler and turns the outcome into `{ body, headers, decision }`. */
async function respond(handler, parse, payload) {
  let request;
  try {
    request = parse(parseJson(payload));
  } catch (error) {
    if (error instanceof BadRequest) return serviceError("400", `bad request: ${error.message}`);
    log.error(`the request parser failed: ${error?.stack ?? error}`);
    return serviceError("500", `internal error: the request parser failed (${error?.name ?? typeof error})`);
  }
  try {
    const decision = await handler(request);
    if (!(decision instanceof Decision)) {
      throw new TypeError(`the handler returned ${typeof decision}, not a Decision`);
    }
    return { body: encoder.encode(JSON.stringify(decision)), headers: null, decision };
  } catch (error) {
    log.error(`the handler failed: ${error?.stack ?? error}`);
    return serviceError("500", `internal error: the handler failed (${error?.name ?? typeof error})`);
  }
}

module.exports = {
  BadRequest,
  parseJson,
  parseSetGroupMemberInfoRequest,
  jsonObject,
  REQUEST_TYPES,
  serviceError,
  respond,
};
