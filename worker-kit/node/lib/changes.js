"use strict";

// The run-time check of a modification against the shapes generated from the command
// schema (models.js): a worker cannot write back a field the command does not have, or a
// value of the wrong type, which the gateway would refuse as an invalid reply.

const { COMMANDS, SHAPES } = require("./models.js");

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const COMMON_FIELDS = ["actionCode", "errCode", "errMsg", "errDlt", "nextCode"];
// Lists of these objects: OpenIM dereferences every entry and reads its userID.
const ENTRIES_NEED_USER_ID = ["UserChanges", "MemberCallbackChanges"];
// Commands whose `content` OpenIM requires to be the text of a JSON object (or "null").
const CONTENT_IS_JSON = ["callbackBeforeMsgModifyCommand", "callbackMsgModifyCommand"];

const isPlainObject = (value) =>
  value !== null && typeof value === "object" && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;

/** A string the gateway can read: no lone surrogate (it would not be valid UTF-8). */
function isWellFormed(text) {
  return typeof text.isWellFormed === "function"
    ? text.isWellFormed()
    : !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(text);
}

/** Throws TypeError when `value` is not of `type` (`str`, `int32`, `int64`, `bool`, `[T]`,
 * `{bool}` or a shape's name); `where` names the value in the message. */
function checkValue(type, value, where) {
  const fail = (expected) => {
    throw new TypeError(`${where} must be ${expected}, not ${JSON.stringify(value) ?? typeof value}`);
  };
  if (type.startsWith("[")) {
    const element = type.slice(1, -1);
    if (!Array.isArray(value)) fail("a list");
    value.forEach((item, index) => {
      if (item === null || item === undefined) fail(`a list without null entries (entry ${index})`);
      checkValue(element, item, `${where}[${index}]`);
      if (ENTRIES_NEED_USER_ID.includes(element) && typeof item.userID !== "string") {
        throw new TypeError(`${where}[${index}].userID must be set: OpenIM reads it for every entry`);
      }
    });
    return;
  }
  if (type === "{bool}") {
    if (!isPlainObject(value)) fail("an object of booleans");
    for (const [key, flag] of Object.entries(value)) checkValue("bool", flag, `${where}.${key}`);
    return;
  }
  switch (type) {
    case "str":
      if (typeof value !== "string") fail("a string");
      if (!isWellFormed(value)) fail("a string without lone surrogates");
      return;
    case "int32":
      if (!Number.isInteger(value) || value < INT32_MIN || value > INT32_MAX) fail("a 32-bit integer");
      return;
    case "int64":
      // JSON numbers are doubles here: past 2^53 an integer is no longer exact.
      if (!Number.isSafeInteger(value)) fail("an integer within ±(2^53 - 1)");
      return;
    case "bool":
      if (typeof value !== "boolean") fail("true or false");
      return;
    default:
      if (!Object.hasOwn(SHAPES, type)) throw new Error(`unknown type ${type} in the models`);
      if (!isPlainObject(value)) fail(`an object (${type})`);
      checkFields(SHAPES[type], value, where);
  }
}

/** The fields of `changes` checked against `shape`; null and undefined ones left out. */
function checkFields(shape, changes, where) {
  const kept = {};
  for (const [name, value] of Object.entries(changes)) {
    if (!Object.hasOwn(shape, name)) {
      throw new TypeError(`${where} has no field ${name}; it has ${Object.keys(shape).join(", ")}`);
    }
    if (value === null || value === undefined) continue;
    checkValue(shape[name].replace(/\?$/, ""), value, `${where}.${name}`);
    kept[name] = value;
  }
  return kept;
}

/**
 * The changes a worker may write back for `command`, checked: every field one the command's
 * answer has, every value of its type. Returns them without the null/undefined ones (absent
 * means "keep the request's value"). Throws TypeError (or Error for a command that takes no
 * changes) with a message naming the field.
 */
function checkChanges(command, changes) {
  const info = COMMANDS[command];
  if (info === undefined) throw new Error(`unknown command ${JSON.stringify(command)}`);
  if (info.kind !== "before") throw new Error(`${command} is an after-callback: nobody reads its answer`);
  if (info.changes === null) throw new Error(`${command} takes no changes: allow() or reject() it`);
  if (!isPlainObject(changes)) throw new TypeError("the changes must be a plain object");
  const common = Object.keys(changes).filter((name) =>
    COMMON_FIELDS.some((field) => field.toLowerCase() === name.toLowerCase()),
  );
  if (common.length) {
    throw new TypeError(`modify() sets the command's own fields, not ${common.join(", ")}`);
  }
  const kept = checkFields(SHAPES[info.changes], changes, info.changes);
  if (CONTENT_IS_JSON.includes(command) && kept.content !== undefined) {
    let parsed;
    try {
      parsed = JSON.parse(kept.content);
    } catch {
      parsed = undefined;
    }
    if (!(parsed === null || isPlainObject(parsed))) {
      throw new TypeError(`${info.changes}.content must be the text of a JSON object: OpenIM refuses anything else`);
    }
  }
  return kept;
}

module.exports = {
  COMMANDS,
  INT32_MIN,
  INT32_MAX,
  COMMON_FIELDS,
  checkChanges,
};
