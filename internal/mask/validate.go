package mask

// luhn reports whether the ASCII digits d pass the Luhn check.
func luhn(d []byte) bool {
	sum := 0
	for i := range d {
		v := int(d[len(d)-1-i] - '0')
		if i%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// rrnValid checks 13 ASCII digits as a resident registration number: the gender/century digit is
// 1–8 (1, 2, 5, 6 born in the 1900s; 3, 4, 7, 8 in the 2000s; 5–8 foreigners), YYMMDD is a real
// date in that century and, if check, the last digit is the check digit.
func rrnValid(d []byte, check bool) bool {
	num := func(i int) int { return int(d[i]-'0')*10 + int(d[i+1]-'0') }
	g := d[6] - '0'
	if g < 1 || g > 8 {
		return false
	}
	year := 1900 + num(0)
	if g == 3 || g == 4 || g == 7 || g == 8 {
		year += 100
	}
	month, day := num(2), num(4)
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return false
	}
	if !check {
		return true
	}
	weights := [12]int{2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5}
	sum := 0
	for i, w := range weights {
		sum += int(d[i]-'0') * w
	}
	return (11-sum%11)%10 == int(d[12]-'0')
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// krPrefix reports whether the first group of a dashed number is a Korean area code or mobile or
// service prefix: 02 (Seoul), 031–033, 041–044, 051–055, 061–064, 010–019 mobile, 070 VoIP,
// 080 toll-free.
func krPrefix(p []byte) bool {
	if len(p) == 2 {
		return p[0] == '0' && p[1] == '2'
	}
	if p[0] != '0' {
		return false
	}
	switch p[1] {
	case '1':
		return p[2] != '2' && p[2] != '3' && p[2] != '4' && p[2] != '5'
	case '3':
		return p[2] >= '1' && p[2] <= '3'
	case '4':
		return p[2] >= '1' && p[2] <= '4'
	case '5':
		return p[2] >= '1' && p[2] <= '5'
	case '6':
		return p[2] >= '1' && p[2] <= '4'
	case '7', '8':
		return p[2] == '0'
	}
	return false
}

// ibanLengths is the IBAN length of each country in the SWIFT IBAN registry.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
	"BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
	"DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
	"GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
	"IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
	"LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
	"PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
	"SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
	"TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

// ibanLength returns the IBAN length for the country code a b (any case), 0 if unknown.
func ibanLength(a, b byte) int {
	var cc [2]byte
	cc[0], cc[1] = a&^0x20, b&^0x20
	return ibanLengths[string(cc[:])]
}

// ibanValid checks the ISO 13616 mod-97 checksum of the letters and digits of an IBAN.
func ibanValid(iban []byte) bool {
	mod := 0
	for i := range iban {
		c := iban[(i+4)%len(iban)]
		if isDigit(c) {
			mod = (mod*10 + int(c-'0')) % 97
		} else {
			mod = (mod*100 + int(c&^0x20-'A') + 10) % 97
		}
	}
	return mod == 1
}
