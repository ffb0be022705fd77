import openim_gateway_worker as ow
from openim_gateway_worker.models import BeforeUpdateUserInfoExCommandRequest


def decide(request: BeforeUpdateUserInfoExCommandRequest) -> ow.Decision:
    if "admin" in (request.get("nickName") or "").lower():
        return ow.answer.reject(5001, "nickname must not contain admin")
    return ow.answer.allow()


raise SystemExit(ow.run({"callbackBeforeUpdateUserInfoExCommand": decide}, name="refuse-admin"))
