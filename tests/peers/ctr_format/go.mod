module osk8s.test/ctrformat

go 1.22
