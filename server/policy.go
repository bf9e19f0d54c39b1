package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"go.uber.org/zap"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/store"
)

const (
	// maxPolicyEntries bounds a subscribers-policy: a list to read, not a
	// directory; accounts and "*" cover large audiences.
	maxPolicyEntries = 500
	// maxPolicyBodyBytes fits maxPolicyEntries ARNs of a few hundred bytes.
	maxPolicyBodyBytes = 256 << 10
)

// policyJSON is a subscribers-policy as the API shows it.
type policyJSON struct {
	ProducerID string   `json:"producerId"`
	Allow      []string `json:"allow"`
	// Default: the producer set no policy; Allow is its own account.
	Default bool `json:"default,omitempty"`
}

// policySetJSON is the answer of a PUT: the policy and the subscriptions
// it ended (an empty array when none).
type policySetJSON struct {
	policyJSON
	Ended []endedJSON `json:"ended"`
}

type endedJSON struct {
	ListenerID  string `json:"listenerId"`
	ResourceARN string `json:"resourceArn"`
}

// subscribersPolicy is who may subscribe to a producer.
type subscribersPolicy struct {
	allow []string
	set   bool // false: the default, the producer's own account
}

// readPolicy returns producer's subscribers-policy, the default when it set
// none.
func (h *api) readPolicy(ctx context.Context, producer store.Agent) (subscribersPolicy, error) {
	allow, set, err := h.agents.SubscribersPolicy(ctx, producer.ID)
	if err != nil {
		return subscribersPolicy{}, fmt.Errorf("read subscribers-policy of %s: %w", producer.ID, err)
	}
	if !set {
		p, _ := auth.ParsePrincipal(producer.ResourceARN)
		return subscribersPolicy{allow: []string{p.Account}}, nil
	}
	return subscribersPolicy{allow: allow, set: true}, nil
}

// allows reports whether the agent registered as listenerARN may subscribe
// under p: "*", its account id, or a principal ARN it matches (a role of
// any path; an account root ARN stands for its whole account, as in IAM).
func (p subscribersPolicy) allows(listenerARN string) bool {
	l, err := auth.ParsePrincipal(listenerARN)
	if err != nil {
		return false
	}
	for _, e := range p.allow {
		switch q, err := auth.ParsePrincipal(e); {
		case e == "*", e == l.Account:
			return true
		case err == nil && q.Kind == auth.Account:
			if q.Partition == l.Partition && q.Account == l.Account {
				return true
			}
		case err == nil && q.Matches(l):
			return true
		}
	}
	return false
}

// notAllowed is the 403 of a subscription p does not allow.
func notAllowed(producer, listener store.Agent, p subscribersPolicy) error {
	which := fmt.Sprintf("its subscribers-policy allows %s", strings.Join(p.allow, ", "))
	if !p.set {
		which = fmt.Sprintf("it set no subscribers-policy, so only principals of its own account %s may subscribe", strings.Join(p.allow, ""))
	}
	return &apiError{status: http.StatusForbidden, msg: fmt.Sprintf(
		"producer %s does not let %s (agent %s) subscribe: %s; its owner %s or an admin can change that with PUT /agents/%s/subscribers-policy",
		producer.ID, listener.ResourceARN, listener.ID, which, producer.ResourceARN, producer.ID)}
}

// getPolicy serves GET /agents/{producerId}/subscribers-policy: 200 with
// who may subscribe (the producer itself or an admin may ask).
func (h *api) getPolicy(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "producerId")
	producer, err := h.lookupAgent(r.Context(), "producer", id)
	if err == nil {
		err = mayActFor(r.Context(), producer, "read its subscribers-policy")
	}
	var p subscribersPolicy
	if err == nil {
		p, err = h.readPolicy(r.Context(), producer)
	}
	if err != nil {
		h.writeError(w, r, err, zap.String("producer_id", id))
		return
	}
	writeJSON(w, http.StatusOK, policyJSON{ProducerID: id, Allow: p.allow, Default: !p.set})
}

// putPolicy serves PUT /agents/{producerId}/subscribers-policy
// {"allow": [...]}: 200 with the policy and the subscriptions it ended.
// The policy is written first, then every live subscriber it no longer
// allows is unsubscribed (as DELETE does, with the same propagation
// bound). A subscribe racing with it re-reads the policy after writing its
// subscription (see subscribe), so no subscription the new policy refuses
// outlives both answers.
func (h *api) putPolicy(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "producerId")
	fields := []zap.Field{zap.String("producer_id", id)}
	producer, err := h.lookupAgent(r.Context(), "producer", id)
	if err == nil {
		err = mayActFor(r.Context(), producer, "set its subscribers-policy")
	}
	var allow []string
	if err == nil {
		allow, err = parsePolicy(w, r)
	}
	if err == nil {
		err = h.agents.SetSubscribersPolicy(r.Context(), id, allow)
	}
	if err != nil {
		h.writeError(w, r, err, fields...)
		return
	}
	ended, err := h.endDisallowed(r.Context(), producer, subscribersPolicy{allow: allow, set: true})
	if err != nil {
		h.writeError(w, r, fmt.Errorf("policy of %s written; ending the subscriptions it no longer allows: %w", id, err), fields...)
		return
	}
	writeJSON(w, http.StatusOK, policySetJSON{policyJSON{ProducerID: id, Allow: allow}, ended})
}

// parsePolicy reads {"allow": [...]}: each entry "*", a 12-digit account
// id, or an IAM role, user or account root ARN.
func parsePolicy(w http.ResponseWriter, r *http.Request) ([]string, error) {
	body, err := readBody(w, r, maxPolicyBodyBytes)
	if err != nil {
		return nil, err
	}
	var req struct {
		Allow *[]string `json:"allow"`
	}
	if err := decodeStrict(body, &req); err != nil {
		return nil, err
	}
	if req.Allow == nil {
		return nil, badRequest(`allow is required: a list of account ids, principal ARNs or "*" (an empty list lets no one subscribe)`)
	}
	if len(*req.Allow) > maxPolicyEntries {
		return nil, badRequest("allow has %d entries; at most %d (allow whole accounts by their id)", len(*req.Allow), maxPolicyEntries)
	}
	allow := make([]string, 0, len(*req.Allow))
	for i, e := range *req.Allow {
		if e == "*" || auth.IsAccountID(e) {
			allow = append(allow, e)
			continue
		}
		if err := validateResourceARN(e); err != nil {
			return nil, prefixError(fmt.Sprintf(`allow entry %d (%q) must be "*", a 12-digit account id or an IAM principal ARN: `, i, e), err)
		}
		allow = append(allow, e)
	}
	return allow, nil
}

// endDisallowed unsubscribes every live subscriber of producer that p does
// not allow and returns them.
func (h *api) endDisallowed(ctx context.Context, producer store.Agent, p subscribersPolicy) ([]endedJSON, error) {
	subs, err := h.subs.Subscribers(ctx, producer.ID)
	if err != nil {
		return nil, err
	}
	ended := []endedJSON{}
	for _, s := range subs {
		if !s.DeletedAt.IsZero() {
			continue
		}
		listener, err := h.lookupAgent(ctx, "listener", s.SubscriberID)
		if err != nil {
			return nil, err
		}
		if p.allows(listener.ResourceARN) {
			continue
		}
		if err := h.subs.Unsubscribe(ctx, producer.ID, listener.ID); err != nil {
			return nil, fmt.Errorf("unsubscribe %s: %w", listener.ID, err)
		}
		h.log.Info("subscription ended by subscribers-policy", zap.String("producer_id", producer.ID), zap.String("subscriber_id", listener.ID))
		ended = append(ended, endedJSON{ListenerID: listener.ID, ResourceARN: listener.ResourceARN})
	}
	return ended, nil
}
