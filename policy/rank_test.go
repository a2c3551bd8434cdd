package policy

import "testing"

func TestReasonRank(t *testing.T) {
	// Most specific first, as Decide picks the reason of a denial.
	order := []string{ReasonGrantExpired, ReasonGrantNotYetValid, ReasonPurposeNotCovered, ReasonFieldNotGranted, ReasonNoGrant}
	for i := 1; i < len(order); i++ {
		if ReasonRank(order[i-1]) <= ReasonRank(order[i]) {
			t.Errorf("ReasonRank(%s) = %d, not above ReasonRank(%s) = %d", order[i-1], ReasonRank(order[i-1]), order[i], ReasonRank(order[i]))
		}
	}
	for _, r := range []string{"", "SOMETHING_NEW", ReasonDatasetNotShared, ReasonQuotaExceeded} {
		if got := ReasonRank(r); got != 0 {
			t.Errorf("ReasonRank(%q) = %d, want 0", r, got)
		}
	}
	if ReasonRank(ReasonNoGrant) <= 0 {
		t.Errorf("ReasonRank(NO_GRANT) = %d, want above an unknown reason's", ReasonRank(ReasonNoGrant))
	}
}
