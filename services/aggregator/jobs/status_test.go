package jobs

import "testing"

func TestStatusOf(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	tasks := func(ok ...bool) []Task {
		out := []Task{}
		for _, s := range ok {
			out = append(out, Task{Success: s})
		}
		return out
	}
	cases := []struct {
		name  string
		tasks []Task
		event *bool
		want  Status
	}{
		{"all succeeded", tasks(true, true), nil, StatusSucceeded},
		{"none succeeded", tasks(false, false), nil, StatusFailed},
		{"some succeeded", tasks(true, false, true), nil, StatusPartial},
		{"one task", tasks(true), nil, StatusSucceeded},
		{"tasks win over a failed job event", tasks(true), &no, StatusSucceeded},
		{"tasks win over a successful job event", tasks(false), &yes, StatusFailed},
		{"empty job, successful event", tasks(), &yes, StatusSucceeded},
		{"empty job, failed event", tasks(), &no, StatusFailed},
		{"empty job, no event", tasks(), nil, StatusFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := statusOf(tc.tasks, tc.event); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
