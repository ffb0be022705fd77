// A complete worker: refuses a group nickname containing "admin", lets everything else through.
const { answer, run, BEFORE_SET_GROUP_MEMBER_INFO } = require("openim-gateway-worker");

function decide(request) {
  if (request.nickName !== null && request.nickName.toLowerCase().includes("admin")) {
    return answer.reject(5001, "nickname not allowed");
  }
  return answer.allow();
}

run({ [BEFORE_SET_GROUP_MEMBER_INFO]: decide }, { name: "refuse-admin" }).then((code) => process.exit(code));
