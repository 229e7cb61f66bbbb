// Command judges reads Kubernetes objects (one JSON array on stdin) and prints, for each, what
// three GitOps tools would call it (one JSON array on stdout, in the same order):
//
//	kstatus       sigs.k8s.io/cli-utils' kstatus, as kubectl and cli-utils users compute it
//	fluxKstatus   Flux's fork of kstatus (github.com/fluxcd/cli-utils), what Flux computes
//	argocd        an Argo CD health.lua (-health-lua), run the way Argo CD runs argocd-cm scripts
//	fluxCel       a Flux Kustomization's spec.healthCheckExprs (-flux-kustomization), evaluated by
//	              Flux's own CEL status reader
//
// A judge that cannot decide reports an error for that object instead of a status.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
)

// Verdict is one judge's answer for one object.
type Verdict struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Verdicts are all judges' answers for one object; a judge not asked for is left out.
type Verdicts struct {
	KStatus     Verdict  `json:"kstatus"`
	FluxKStatus Verdict  `json:"fluxKstatus"`
	ArgoCD      *Verdict `json:"argocd,omitempty"`
	FluxCEL     *Verdict `json:"fluxCel,omitempty"`
}

func main() {
	healthLua := flag.String("health-lua", "", "an Argo CD health.lua to run over each object")
	kustomization := flag.String("flux-kustomization", "", "a Flux Kustomization (YAML) whose spec.healthCheckExprs to evaluate")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *healthLua, *kustomization); err != nil {
		fmt.Fprintln(os.Stderr, "judges:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, healthLua, kustomization string) error {
	var argo *argoJudge
	if healthLua != "" {
		script, err := os.ReadFile(healthLua)
		if err != nil {
			return err
		}
		argo = &argoJudge{script: string(script)}
	}
	var flux *celJudge
	if kustomization != "" {
		var err error
		if flux, err = newCELJudge(kustomization); err != nil {
			return err
		}
	}
	objects, err := readObjects(in)
	if err != nil {
		return err
	}
	verdicts := make([]Verdicts, 0, len(objects))
	for _, obj := range objects {
		v := Verdicts{KStatus: kstatus(obj), FluxKStatus: fluxKStatus(obj)}
		if argo != nil {
			a := argo.judge(obj)
			v.ArgoCD = &a
		}
		if flux != nil {
			f := flux.judge(obj)
			v.FluxCEL = &f
		}
		verdicts = append(verdicts, v)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(verdicts)
}

// readObjects decodes as the apiserver's clients do: whole numbers become int64, which kstatus'
// generation checks require (float64 would make them fail).
func readObjects(in io.Reader) ([]*unstructured.Unstructured, error) {
	data, err := io.ReadAll(in)
	if err != nil {
		return nil, err
	}
	var raw []map[string]any
	if err := k8sjson.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("stdin is not a JSON array of objects: %w", err)
	}
	objects := make([]*unstructured.Unstructured, len(raw))
	for i, o := range raw {
		objects[i] = &unstructured.Unstructured{Object: o}
	}
	return objects, nil
}
