package simulate

// region is an administrative division the simulated city knows.
type region struct {
	code string
	// name is the division's own name, e.g. "长安区".
	name string
	// city is the prefecture-level city, e.g. "石家庄市".
	city string
	// urban is true for the districts of the central city.
	urban bool
	// weight is the relative number of enterprises registered there.
	weight int
	roads  []string
}

// full returns the address prefix, e.g. "石家庄市长安区".
func (r *region) full() string { return r.city + r.name }

// regions are the divisions of Shijiazhuang and a few of Tangshan and
// Baoding, so that jurisdiction filters have something to exclude.
var regions = []*region{
	{"130102", "长安区", "石家庄市", true, 14, []string{"中山东路", "建设北大街", "和平东路", "广安大街", "胜利北大街", "谈固东街", "光华路"}},
	{"130104", "桥西区", "石家庄市", true, 14, []string{"中山西路", "自强路", "新石中路", "维明南大街", "红旗大街", "槐安西路", "友谊南大街"}},
	{"130105", "新华区", "石家庄市", true, 12, []string{"中华北大街", "友谊北大街", "和平西路", "石清路", "联盟路", "合作路", "民族路"}},
	{"130107", "井陉矿区", "石家庄市", false, 2, []string{"矿市街", "建设路", "贾庄路"}},
	{"130108", "裕华区", "石家庄市", true, 14, []string{"槐安东路", "裕华东路", "体育南大街", "建华南大街", "翟营南大街", "东岗路", "槐中路"}},
	{"130109", "藁城区", "石家庄市", false, 4, []string{"廉州路", "兴安大街", "府前街", "藁新路"}},
	{"130110", "鹿泉区", "石家庄市", false, 4, []string{"向阳大街", "石铜路", "振兴路", "上庄大街"}},
	{"130111", "栾城区", "石家庄市", false, 4, []string{"裕翔街", "栾武路", "宋城大街", "窦妪路"}},
	{"130121", "井陉县", "石家庄市", false, 2, []string{"微水大街", "天长镇东街", "凤山路"}},
	{"130123", "正定县", "石家庄市", false, 4, []string{"常山西路", "燕赵南大街", "中山东路", "恒州北路"}},
	{"130125", "行唐县", "石家庄市", false, 1, []string{"龙州大街", "上闫庄路", "府前路"}},
	{"130126", "灵寿县", "石家庄市", false, 1, []string{"松阳大街", "北环路", "中山西路"}},
	{"130127", "高邑县", "石家庄市", false, 1, []string{"千秋大街", "建设路", "兴华路"}},
	{"130128", "深泽县", "石家庄市", false, 1, []string{"深泽大街", "东环路", "泽城路"}},
	{"130129", "赞皇县", "石家庄市", false, 1, []string{"赞皇大街", "檀山路", "富强路"}},
	{"130130", "无极县", "石家庄市", false, 1, []string{"无极大街", "新华路", "建设路"}},
	{"130131", "平山县", "石家庄市", false, 2, []string{"冶河大街", "中山路", "平山大街"}},
	{"130132", "元氏县", "石家庄市", false, 1, []string{"槐阳大街", "槐阳路", "元氏大街"}},
	{"130133", "赵县", "石家庄市", false, 2, []string{"石塔路", "赵州大街", "永通路"}},
	{"130181", "辛集市", "石家庄市", false, 3, []string{"兴华路", "教育路", "辛集大街", "皮革城路"}},
	{"130183", "晋州市", "石家庄市", false, 2, []string{"晋州大街", "鼓城路", "中兴路"}},
	{"130184", "新乐市", "石家庄市", false, 2, []string{"长寿大街", "新乐大街", "伏羲路"}},
	{"130202", "路南区", "唐山市", false, 2, []string{"新华西道", "建设南路", "文化路"}},
	{"130203", "路北区", "唐山市", false, 2, []string{"北新道", "龙泽路", "建设北路"}},
	{"130602", "竞秀区", "保定市", false, 2, []string{"朝阳北大街", "东风西路", "七一西路"}},
	{"130606", "莲池区", "保定市", false, 2, []string{"裕华西路", "东风中路", "五四东路"}},
}

// regionByCode finds a region.
var regionByCode = func() map[string]*region {
	m := make(map[string]*region, len(regions))
	for _, r := range regions {
		m[r.code] = r
	}
	return m
}()

// idRegions are the divisions that appear in resident identity numbers.
// Numbers keep the code of the place of first registration, so they include
// divisions that have since been renamed or merged (桥东区, 藁城市, 鹿泉市,
// 栾城县) and some from other provinces.
var idRegions = []struct {
	code   string
	weight int
}{
	{"130102", 10}, {"130103", 6}, {"130104", 10}, {"130105", 10}, {"130107", 2},
	{"130121", 2}, {"130123", 3}, {"130124", 2}, {"130125", 2}, {"130126", 1},
	{"130127", 1}, {"130128", 1}, {"130129", 1}, {"130130", 1}, {"130131", 2},
	{"130132", 1}, {"130133", 2}, {"130181", 2}, {"130182", 3}, {"130183", 2},
	{"130184", 2}, {"130185", 3}, {"130202", 2}, {"130203", 1}, {"130602", 2},
	{"130402", 1}, {"130502", 1}, {"131102", 1}, {"410105", 1}, {"370102", 1},
	{"140105", 1}, {"110105", 1},
}

var surnames = []string{
	"王", "李", "张", "刘", "赵", "杨", "陈", "高", "孙", "马", "郭", "田", "韩", "杜", "冯",
	"吴", "徐", "周", "胡", "朱", "何", "宋", "董", "梁", "许", "苏", "贾", "崔", "曹", "郑",
	"白", "齐", "霍", "范", "史", "耿", "侯", "闫", "魏", "邢",
}

var givenMale = []string{
	"伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞",
	"建国", "志强", "建华", "国庆", "海涛", "立新", "振华", "晓东", "文博", "子轩", "浩然", "宇航", "俊杰", "志刚", "永胜",
}

var givenFemale = []string{
	"芳", "娜", "敏", "静", "丽", "艳", "霞", "娟", "秀英", "桂兰", "丽娟", "海燕", "雪梅", "晓红", "玉兰",
	"思雨", "欣怡", "梓涵", "雨萱", "佳琪", "晓静", "婷婷", "文静", "淑芬", "美玲",
}

// tradeChars build trade names (字号) of two characters.
var tradeChars = []rune("恒信华泰中诚永盛宏达金鼎瑞丰嘉禾鑫源德润昌隆万博汇通兴旺宝利天成康宁聚福和美佳乐新创远航正阳晨光益民众合联亿龙凯悦安泽")

// industry is a GB/T 4754-2017 class with what goes with it.
type industry struct {
	code, name string
	group      string
	words      []string // words of enterprise names
	scope      string
	landUse    string
	weight     int
	individual bool // individual businesses (个体工商户) are common
}

// industries the generator draws from. Groups decide the permits an
// enterprise holds.
var industries = []industry{
	{"H6210", "正餐服务", "catering", []string{"餐饮管理", "餐饮服务", "饮食"}, "餐饮服务；餐饮管理；食品销售（仅销售预包装食品）。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "餐饮用地", 12, true},
	{"H6220", "快餐服务", "catering", []string{"快餐", "餐饮服务", "餐饮管理"}, "餐饮服务；外卖递送服务；食品销售（仅销售预包装食品）。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "餐饮用地", 8, true},
	{"H6291", "小吃服务", "catering", []string{"小吃", "餐饮"}, "餐饮服务（小餐饮）；食品销售（仅销售预包装食品）。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "餐饮用地", 5, true},
	{"H6232", "咖啡馆服务", "catering", []string{"咖啡", "餐饮管理"}, "餐饮服务；咖啡、饮料制售；食品销售（仅销售预包装食品）。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "餐饮用地", 3, false},
	{"F5212", "超级市场零售", "food_retail", []string{"超市", "商贸", "连锁超市"}, "食品销售；日用百货销售；保健食品（预包装）销售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "零售商业用地", 8, false},
	{"F5222", "糕点、面包零售", "food_retail", []string{"食品销售", "烘焙"}, "食品销售；糕点、面包零售；食用农产品零售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "零售商业用地", 4, true},
	{"F5223", "果品、蔬菜零售", "food_retail", []string{"果蔬", "农产品销售"}, "食用农产品零售；新鲜水果零售；新鲜蔬菜零售；食品销售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "零售商业用地", 4, true},
	{"F5226", "酒、饮料及茶叶零售", "food_retail", []string{"茶业", "酒业", "商贸"}, "食品销售；酒类经营；茶具销售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "零售商业用地", 3, true},
	{"C1411", "糕点、面包制造", "food_making", []string{"食品", "食品科技"}, "食品生产；食品销售；糕点、面包制造。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "工业用地", 3, false},
	{"E4710", "住宅房屋建筑", "construction", []string{"建筑工程", "建设工程", "建设集团"}, "建设工程施工；住宅室内装饰装修；建筑材料销售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 6, false},
	{"E4790", "其他房屋建筑业", "construction", []string{"建筑安装工程", "建设工程"}, "建设工程施工；施工专业作业；建筑劳务分包。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "仓储用地", 3, false},
	{"E5011", "公共建筑装饰和装修", "construction", []string{"建筑装饰工程", "装饰工程"}, "建设工程施工；住宅室内装饰装修；建筑装饰材料销售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 4, false},
	{"K7010", "房地产开发经营", "real_estate", []string{"房地产开发", "置业"}, "房地产开发经营；物业管理；房地产经纪。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "城镇住宅用地", 4, false},
	{"H6110", "旅游饭店", "lodging", []string{"酒店管理", "宾馆"}, "住宿服务；餐饮服务；食品销售；会议及展览服务。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 3, false},
	{"H6121", "经济型连锁酒店", "lodging", []string{"酒店管理", "快捷酒店"}, "住宿服务；餐饮服务；食品销售（仅销售预包装食品）。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 2, false},
	{"O8040", "理发及美容服务", "public_place", []string{"美容美发", "形象设计"}, "理发服务；生活美容服务；化妆品零售。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "零售商业用地", 4, true},
	{"O8051", "洗浴服务", "public_place", []string{"洗浴服务", "休闲会馆"}, "洗浴服务；足浴服务；餐饮服务。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "零售商业用地", 2, false},
	{"L7291", "旅行社及相关服务", "travel", []string{"国际旅行社", "旅行社", "旅游服务"}, "旅游业务；票务代理服务；会议及展览服务。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 4, false},
	{"L7259", "其他广告服务", "advertising", []string{"广告传媒", "文化传媒", "广告"}, "广告设计、代理；广告制作；广告发布；户外广告设施设置。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 4, false},
	{"G5431", "普通货物道路运输", "logistics", []string{"物流", "货运", "运输"}, "道路货物运输（不含危险货物）；普通货物仓储服务；国内货物运输代理。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "仓储用地", 4, false},
	{"I6513", "应用软件开发", "software", []string{"网络科技", "信息技术", "软件科技"}, "软件开发；信息系统集成服务；技术服务、技术开发、技术咨询。（依法须经批准的项目，经相关部门批准后方可开展经营活动）", "商务金融用地", 4, false},
}

// matter is a licensing matter of the catalogue.
type matter struct {
	code, name string
	// years is the validity in years; 0 means the permit has no end date.
	years int
	// level is "district", "city" or "province": the authority that decides.
	level string
}

// Licensing matters. The codes follow the shape of the national catalogue
// of licensing matters; they are illustrative.
var (
	mFoodBusiness = matter{"000124004000", "食品经营许可", 5, "district"}
	mFoodProduce  = matter{"000124001000", "食品生产许可", 5, "city"}
	mPlanning     = matter{"000150004000", "建设工程规划许可证", 0, "city"}
	mConstruction = matter{"000150007000", "建筑工程施工许可", 0, "district"}
	mPublicPlace  = matter{"000123006000", "公共场所卫生许可", 4, "district"}
	mOutdoorAd    = matter{"000150012000", "户外广告设施设置许可", 3, "city"}
	mTourGuide    = matter{"000141003000", "导游证核发", 3, "province"}
	mTravelAgency = matter{"000141001000", "旅行社业务经营许可", 0, "province"}
	mRoadFreight  = matter{"000152002000", "道路货物运输经营许可", 4, "city"}
)

// Matters lists the licensing matters of the simulated approval bureau.
func Matters() []struct{ Code, Name string } {
	ms := []matter{mFoodBusiness, mFoodProduce, mPlanning, mConstruction, mPublicPlace, mOutdoorAd, mTourGuide, mTravelAgency, mRoadFreight}
	out := make([]struct{ Code, Name string }, len(ms))
	for i, m := range ms {
		out[i].Code, out[i].Name = m.code, m.name
	}
	return out
}

// groupMatters gives, per industry group, the matters an enterprise of the
// group applies for and how many separate lines of permits it holds.
var groupMatters = map[string][]struct {
	m     matter
	prob  float64
	lines int
}{
	"catering":     {{mFoodBusiness, 1, 1}, {mOutdoorAd, 0.4, 1}},
	"food_retail":  {{mFoodBusiness, 1, 1}, {mOutdoorAd, 0.3, 1}},
	"food_making":  {{mFoodProduce, 1, 1}, {mFoodBusiness, 0.6, 1}},
	"construction": {{mConstruction, 1, 3}, {mPlanning, 0.5, 1}},
	"real_estate":  {{mPlanning, 1, 2}, {mConstruction, 1, 2}, {mOutdoorAd, 0.5, 1}},
	"lodging":      {{mPublicPlace, 1, 1}, {mFoodBusiness, 1, 1}, {mOutdoorAd, 0.5, 1}},
	"public_place": {{mPublicPlace, 1, 1}, {mOutdoorAd, 0.3, 1}},
	"travel":       {{mTravelAgency, 1, 1}, {mOutdoorAd, 0.3, 1}},
	"advertising":  {{mOutdoorAd, 1, 3}},
	"logistics":    {{mRoadFreight, 1, 1}, {mOutdoorAd, 0.2, 1}},
	"software":     {{mOutdoorAd, 0.5, 1}},
}
