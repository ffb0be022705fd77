"use strict";

// openim-gateway-worker: write an openim-gateway worker in Node. The public API, re-exported
// from the modules split by concept (see README.md):
//
//   const { answer, run, BEFORE_SET_GROUP_MEMBER_INFO } = require("openim-gateway-worker");
//   process.exit(await run({ [BEFORE_SET_GROUP_MEMBER_INFO]: (request) => answer.allow() }));
//
// Every name is assigned on its own line so that `import { answer } from "openim-gateway-worker"`
// finds it too (Node reads the names of a CommonJS module from these assignments).

const { version } = require("../package.json");

/** This package's version: the version of the worker protocol it speaks. */
exports.VERSION = version;

const names = require("./names.js");
exports.DEFAULT_SUBJECT_PREFIX = names.DEFAULT_SUBJECT_PREFIX;
exports.QUEUE_GROUP = names.QUEUE_GROUP;
exports.BEFORE_SET_GROUP_MEMBER_INFO = names.BEFORE_SET_GROUP_MEMBER_INFO;
exports.HEADER_REQUEST_ID = names.HEADER_REQUEST_ID;
exports.HEADER_DEADLINE_UNIX_MS = names.HEADER_DEADLINE_UNIX_MS;
exports.HEADER_SERVICE_ERROR = names.HEADER_SERVICE_ERROR;
exports.HEADER_SERVICE_ERROR_CODE = names.HEADER_SERVICE_ERROR_CODE;
exports.PING_INTERVAL_MS = names.PING_INTERVAL_MS;
exports.SHUTDOWN_GRACE_MS = names.SHUTDOWN_GRACE_MS;
exports.EXIT_OK = names.EXIT_OK;
exports.EXIT_CANNOT_RUN = names.EXIT_CANNOT_RUN;
exports.EXIT_BAD_SETTINGS = names.EXIT_BAD_SETTINGS;

const settings = require("./settings.js");
exports.KIT_VARIABLES = settings.KIT_VARIABLES;
exports.collectSettings = settings.collectSettings;
exports.editDistance = settings.editDistance;
exports.misspelledVariables = settings.misspelledVariables;
exports.settingsProblems = settings.settingsProblems;
exports.NATS_URL = settings.NATS_URL;
exports.WORKER_SUBJECT_PREFIX = settings.WORKER_SUBJECT_PREFIX;
exports.WORKER_CONCURRENCY = settings.WORKER_CONCURRENCY;
exports.WORKER_LOG_LEVEL = settings.WORKER_LOG_LEVEL;
exports.WORKER_NATS_CREDS = settings.WORKER_NATS_CREDS;
exports.WORKER_NATS_NKEY = settings.WORKER_NATS_NKEY;
exports.WORKER_NATS_TLS_CA = settings.WORKER_NATS_TLS_CA;
exports.WORKER_NATS_TLS_CERT = settings.WORKER_NATS_TLS_CERT;
exports.WORKER_NATS_TLS_KEY = settings.WORKER_NATS_TLS_KEY;
exports.DEFAULT_NATS_URL = settings.DEFAULT_NATS_URL;
exports.DEFAULT_CONCURRENCY = settings.DEFAULT_CONCURRENCY;
exports.MAX_CONCURRENCY = settings.MAX_CONCURRENCY;
exports.SettingsError = settings.SettingsError;
exports.WHITESPACE_CHARS = settings.WHITESPACE_CHARS;
exports.normaliseWhitespace = settings.normaliseWhitespace;
exports.isValidSubject = settings.isValidSubject;
exports.redactNatsUrls = settings.redactNatsUrls;
exports.parseNatsUrls = settings.parseNatsUrls;
exports.parseIntSetting = settings.parseIntSetting;
exports.readSettings = settings.readSettings;
exports.readSecurity = settings.readSecurity;
exports.isValidName = settings.isValidName;
exports.parseNameSetting = settings.parseNameSetting;

const log = require("./log.js");
exports.LOG_LEVELS = log.LOG_LEVELS;
exports.log = log.log;

const changes = require("./changes.js");
exports.COMMANDS = changes.COMMANDS;
exports.SHAPES = require("./models.js").SHAPES;
exports.INT32_MIN = changes.INT32_MIN;
exports.INT32_MAX = changes.INT32_MAX;
exports.checkChanges = changes.checkChanges;

const answer = require("./answer.js");
exports.answer = answer.answer;
exports.MIN_REJECT_ERR_CODE = answer.MIN_REJECT_ERR_CODE;
exports.Decision = answer.Decision;
exports.allow = answer.allow;
exports.reject = answer.reject;
exports.modify = answer.modify;

const handler = require("./handler.js");
exports.BadRequest = handler.BadRequest;
exports.parseJson = handler.parseJson;
exports.parseSetGroupMemberInfoRequest = handler.parseSetGroupMemberInfoRequest;
exports.jsonObject = handler.jsonObject;
exports.REQUEST_TYPES = handler.REQUEST_TYPES;
exports.serviceError = handler.serviceError;
exports.respond = handler.respond;

const deadline = require("./deadline.js");
exports.deadlineUnixMs = deadline.deadlineUnixMs;
exports.nowUnixMs = deadline.nowUnixMs;
exports.isPast = deadline.isPast;

const shutdown = require("./shutdown.js");
exports.stopOnSignals = shutdown.stopOnSignals;

const connect = require("./connect.js");
exports.CONNECT_LOG_INTERVAL_MS = connect.CONNECT_LOG_INTERVAL_MS;
exports.RECONNECT_WAIT_MS = connect.RECONNECT_WAIT_MS;
exports.LogThrottle = connect.LogThrottle;

const service = require("./service.js");
exports.Semaphore = service.Semaphore;
exports.Worker = service.Worker;
exports.serve = service.serve;

const after_stream = require("./after-stream.js");
exports.HEADER_CALLBACK_COMMAND = after_stream.HEADER_CALLBACK_COMMAND;
exports.DEFAULT_ACK_WAIT_MS = after_stream.DEFAULT_ACK_WAIT_MS;
exports.DEFAULT_NAK_DELAY_MS = after_stream.DEFAULT_NAK_DELAY_MS;
exports.DEFAULT_FETCH_WAIT_MS = after_stream.DEFAULT_FETCH_WAIT_MS;
exports.ACK_TIMEOUT_MS = after_stream.ACK_TIMEOUT_MS;
exports.afterSubjects = after_stream.afterSubjects;
exports.afterCommand = after_stream.afterCommand;
exports.plainHeaders = after_stream.plainHeaders;
exports.AfterStreamConsumer = after_stream.AfterStreamConsumer;
exports.consumeAfterStream = after_stream.consumeAfterStream;
exports.serveAfterStream = after_stream.serveAfterStream;

const worker = require("./worker.js");
exports.run = worker.run;
exports.runAfterStream = worker.runAfterStream;
exports.reportProblems = worker.reportProblems;
