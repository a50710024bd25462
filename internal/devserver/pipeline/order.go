package pipeline

import (
	"fmt"
	"slices"
	"strings"
)

// Order groups the jobs into layers: every job's dependencies are in earlier
// layers, and the jobs of one layer may run in parallel. Within a layer jobs
// keep their YAML order. Unknown dependencies and cycles are errors naming
// the jobs involved.
func (p *Pipeline) Order() ([][]*Job, error) {
	index := make(map[string]int, len(p.Jobs))
	for i, j := range p.Jobs {
		k := strings.ToLower(j.Name)
		if _, dup := index[k]; dup {
			return nil, fmt.Errorf("order jobs: job name %q is used twice", j.Name)
		}
		index[k] = i
	}
	pending := make([]int, len(p.Jobs)) // unmet dependencies per job
	dependents := make([][]int, len(p.Jobs))
	for i, j := range p.Jobs {
		seen := map[int]bool{}
		for _, d := range j.DependsOn {
			di, ok := index[strings.ToLower(d)]
			if !ok {
				return nil, fmt.Errorf("order jobs: job %q depends on %q, which is not a job of this pipeline", j.Name, d)
			}
			if seen[di] {
				continue
			}
			seen[di] = true
			pending[i]++
			dependents[di] = append(dependents[di], i)
		}
	}

	var layers [][]*Job
	var ready []int
	for i := range p.Jobs {
		if pending[i] == 0 {
			ready = append(ready, i)
		}
	}
	done := 0
	for len(ready) > 0 {
		layer := make([]*Job, 0, len(ready))
		var next []int
		for _, i := range ready {
			layer = append(layer, p.Jobs[i])
			for _, k := range dependents[i] {
				pending[k]--
				if pending[k] == 0 {
					next = append(next, k)
				}
			}
		}
		done += len(ready)
		layers = append(layers, layer)
		slices.Sort(next)
		ready = next
	}
	if done < len(p.Jobs) {
		return nil, fmt.Errorf("order jobs: dependsOn forms a cycle: %s", p.cycle(index, pending))
	}
	return layers, nil
}

// cycle finds one dependency cycle among the jobs still pending and spells
// it "a -> b -> a" (a depends on b, which depends on a).
func (p *Pipeline) cycle(index map[string]int, pending []int) string {
	start := -1
	for i := range p.Jobs {
		if pending[i] > 0 {
			start = i
			break
		}
	}
	// Follow unmet dependencies; every pending job has one, so the walk must
	// revisit a job, and the part from its first visit is a cycle.
	pos := map[int]int{}
	var path []int
	for i := start; ; {
		if at, ok := pos[i]; ok {
			names := make([]string, 0, len(path)-at+1)
			for k := at; k < len(path); k++ {
				names = append(names, p.Jobs[path[k]].Name)
			}
			names = append(names, p.Jobs[i].Name)
			return strings.Join(names, " -> ")
		}
		pos[i] = len(path)
		path = append(path, i)
		next := -1
		for _, d := range p.Jobs[i].DependsOn {
			if di := index[strings.ToLower(d)]; pending[di] > 0 {
				next = di
				break
			}
		}
		if next < 0 { // cannot happen while i is pending
			return p.Jobs[i].Name
		}
		i = next
	}
}
