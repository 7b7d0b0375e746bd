package staticinit

import _ "embed"

//go:embed init_linux_amd64
var program_ []byte
