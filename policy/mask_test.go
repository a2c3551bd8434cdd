package policy

import (
	"testing"
	"unicode/utf8"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func TestApplyMask(t *testing.T) {
	const (
		id     = v1.MaskKind_MASK_KIND_RESIDENT_ID
		phone  = v1.MaskKind_MASK_KIND_PHONE
		name   = v1.MaskKind_MASK_KIND_NAME
		addr   = v1.MaskKind_MASK_KIND_ADDRESS
		redact = v1.MaskKind_MASK_KIND_REDACT
		none   = v1.MaskKind_MASK_KIND_UNSPECIFIED
	)
	tests := []struct {
		kind     v1.MaskKind
		in, want string
	}{
		{id, "130102199003071234", "130102********1234"},
		{id, "13010219900307123X", "130102********123X"},
		{id, "130102900307123", "130102*****7123"},
		{id, "1301021234", "**********"},
		{id, "", ""},
		{phone, "13812345678", "138****5678"},
		{phone, "0311-86012345", "031******2345"},
		{phone, "86012345", "860*2345"},
		{phone, "12345", "***45"},
		{phone, "110", "***"},
		{name, "张三", "张*"},
		{name, "张三丰", "张**"},
		{name, "欧阳修远", "欧***"},
		{name, "张", "*"},
		{name, "Li Lei", "L*****"},
		{name, "石家庄市恒信建材有限公司", "石***********"},
		{addr, "河北省石家庄市长安区建设北大街88号", "河北省石家庄市长安区***"},
		{addr, "河北省石家庄市正定县正定镇中山路1号", "河北省石家庄市正定县***"},
		{addr, "河北省石家庄市辛集市教育路5号", "河北省石家庄市辛集市***"},
		{addr, "北京市海淀区中关村大街27号", "北京市海淀区***"},
		{addr, "内蒙古自治区呼和浩特市新城区中山东路1号", "内蒙古自治区呼和浩特市新城区***"},
		{addr, "河北省辛集市教育路5号", "河北省辛集市***"},
		{addr, "长安区建设北大街88号", "长安区***"},
		{addr, "建设北大街88号", "***"},
		{addr, "河北省石家庄市长安区", "河北省石家庄市长安区"},
		{redact, "anything at all", "***"},
		{redact, "保密", "***"},
		{none, "张三丰", "张三丰"},
		{v1.MaskKind(99), "张三丰", "***"},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+"/"+tt.in, func(t *testing.T) {
			got := ApplyMask(tt.kind, tt.in)
			if got != tt.want {
				t.Errorf("ApplyMask(%v, %q) = %q, want %q", tt.kind, tt.in, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("ApplyMask(%v, %q) = %q is not valid UTF-8", tt.kind, tt.in, got)
			}
		})
	}
}
