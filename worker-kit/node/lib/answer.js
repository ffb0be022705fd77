"use strict";

// Answers: allow(), reject(code, msg) and modify(command, changes), the three shapes the
// gateway accepts (docs/worker-protocol.md). Built any other way, they throw.

// --- Decisions -------------------------------------------------------------------------------

const { INT32_MIN, INT32_MAX, checkChanges } = require("./changes.js");

const MIN_REJECT_ERR_CODE = 100;

/** An OpenIM answer: the five common fields plus the command's own fields to write. */
// Only allow(), reject() and modify() hold it: they check what they build, a `new Decision`
// from elsewhere could not be checked.
const BUILDER = Symbol("openim-gateway-worker answer builder");

class Decision {
  constructor(builder, { actionCode = 0, errCode = 0, errMsg = "", errDlt = "", nextCode = 0, fields = {} } = {}) {
    if (builder !== BUILDER) {
      throw new TypeError("build an answer with answer.allow(), answer.reject() or answer.modify()");
    }
    this.actionCode = actionCode;
    this.errCode = errCode;
    this.errMsg = errMsg;
    this.errDlt = errDlt;
    this.nextCode = nextCode;
    this.fields = Object.freeze({ ...fields });
    Object.freeze(this);
  }

  get isReject() {
    return this.actionCode === 0 && this.nextCode === 1;
  }

  toObject() {
    const { actionCode, errCode, errMsg, errDlt, nextCode } = this;
    return { actionCode, errCode, errMsg, errDlt, nextCode, ...this.fields };
  }

  toJSON() {
    return this.toObject();
  }
}

/** Let the operation through unchanged. */
function allow() {
  return new Decision(BUILDER);
}

/** Refuse the operation. OpenIM shows `errCode` (at least 100) and `errMsg` to the user. */
function reject(errCode, errMsg, errDlt = "") {
  if (!Number.isInteger(errCode) || errCode < MIN_REJECT_ERR_CODE || errCode > INT32_MAX) {
    throw new RangeError(`a reject's errCode must be an integer in 100..=${INT32_MAX}`);
  }
  if (typeof errMsg !== "string" || typeof errDlt !== "string") {
    throw new TypeError("errMsg and errDlt must be strings");
  }
  if (!errMsg.isWellFormed() || !errDlt.isWellFormed()) {
    throw new TypeError("errMsg and errDlt must not hold lone surrogates (not valid UTF-8)");
  }
  return new Decision(BUILDER, { errCode, errMsg, errDlt, nextCode: 1 });
}

/**
 * Allow, writing these fields of `command`'s answer (OpenIM's JSON names, e.g.
 * `modify(BEFORE_SET_GROUP_MEMBER_INFO, { nickName: "Bob" })`). Each field must be one the
 * command's answer has, with its type (see models.d.ts); anything else throws, so an answer
 * the gateway would refuse for its shape cannot be built. A field given as null or undefined
 * is left out: absent means "keep the request's value".
 */
function modify(command, changes) {
  if (typeof command !== "string") {
    throw new TypeError("modify(command, changes): name the command first, e.g. modify(BEFORE_SET_GROUP_MEMBER_INFO, { nickName })");
  }
  return new Decision(BUILDER, { fields: checkChanges(command, changes) });
}

/** The three answers: `answer.allow()`, `answer.reject(code, msg)`, `answer.modify(command, changes)`. */
const answer = Object.freeze({ allow, reject, modify });

module.exports = {
  answer,
  INT32_MIN,
  INT32_MAX,
  MIN_REJECT_ERR_CODE,
  Decision,
  allow,
  reject,
  modify,
};
