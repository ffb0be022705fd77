// Command refuseadmin is the worker of the kit's README: it refuses a group nickname containing
// "admin" and allows everything else.
package main

import (
	"log"
	"strings"

	ow "github.com/openim-gateway/openim-gateway/worker-kit/go"
)

func main() {
	w := ow.New("refuse-admin")
	ow.Handle(w, "callbackBeforeSetGroupMemberInfoCommand",
		func(_ *ow.Context, r *ow.BeforeSetGroupMemberInfoCommandRequest) (ow.Decision, error) {
			if r.NickName != nil && strings.Contains(strings.ToLower(*r.NickName), "admin") {
				return ow.Reject(5001, "nickname not allowed")
			}
			return ow.Allow(), nil
		})
	if err := ow.Run(w); err != nil {
		log.Fatal(err)
	}
}
