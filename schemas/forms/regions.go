package forms

// regionNames are the administrative divisions (GB/T 2260) the demo data
// uses: Hebei province, Shijiazhuang's districts and counties (including
// the former 桥东区, 藁城市, 鹿泉市 and 栾城县, which live on in resident ID
// numbers), a few of Tangshan and Baoding, the prefecture-level cities of
// Hebei, and the out-of-province divisions that appear in resident IDs.
var regionNames = map[string]string{
	"130000": "河北省",
	"130100": "石家庄市",
	"130102": "长安区",
	"130103": "桥东区",
	"130104": "桥西区",
	"130105": "新华区",
	"130107": "井陉矿区",
	"130108": "裕华区",
	"130109": "藁城区",
	"130110": "鹿泉区",
	"130111": "栾城区",
	"130121": "井陉县",
	"130123": "正定县",
	"130124": "栾城县",
	"130125": "行唐县",
	"130126": "灵寿县",
	"130127": "高邑县",
	"130128": "深泽县",
	"130129": "赞皇县",
	"130130": "无极县",
	"130131": "平山县",
	"130132": "元氏县",
	"130133": "赵县",
	"130181": "辛集市",
	"130182": "藁城市",
	"130183": "晋州市",
	"130184": "新乐市",
	"130185": "鹿泉市",
	"130200": "唐山市",
	"130202": "路南区",
	"130203": "路北区",
	"130300": "秦皇岛市",
	"130400": "邯郸市",
	"130402": "邯山区",
	"130500": "邢台市",
	"130502": "桥东区",
	"130600": "保定市",
	"130602": "竞秀区",
	"130606": "莲池区",
	"130700": "张家口市",
	"130800": "承德市",
	"130900": "沧州市",
	"131000": "廊坊市",
	"131100": "衡水市",
	"131102": "桃城区",
	"110000": "北京市",
	"110105": "朝阳区",
	"140000": "山西省",
	"140100": "太原市",
	"140105": "小店区",
	"370000": "山东省",
	"370100": "济南市",
	"370102": "历下区",
	"410000": "河南省",
	"410100": "郑州市",
	"410105": "金水区",
}

// municipalities are provinces whose divisions sit directly under them.
var municipalities = map[string]bool{"110000": true, "120000": true, "310000": true, "500000": true}

// RegionName returns the full name (河北省石家庄市长安区) and the short name
// (长安区) of a six-digit division code, and whether the code is known.
// Codes of a province (130000) or a city (130100) are accepted too.
func RegionName(code string) (full, short string, ok bool) {
	if len(code) != 6 {
		return "", "", false
	}
	name, ok := regionNames[code]
	if !ok {
		return "", "", false
	}
	prov := code[:2] + "0000"
	city := code[:4] + "00"
	switch {
	case code == prov:
		return name, name, true
	case code == city || municipalities[prov]:
		return regionNames[prov] + name, name, true
	}
	cityName, ok := regionNames[city]
	if !ok {
		return "", "", false
	}
	return regionNames[prov] + cityName + name, name, true
}
