package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling/engine"
	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// celJudge is Flux's CEL status reader (the one kustomize-controller registers for the kinds in
// spec.healthCheckExprs), built from a Kustomization manifest.
type celJudge struct {
	reader engine.StatusReader
}

func newCELJudge(path string) (*celJudge, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ks struct {
		Kind string `json:"kind"`
		Spec struct {
			HealthCheckExprs json.RawMessage `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &ks); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ks.Kind != "Kustomization" || len(ks.Spec.HealthCheckExprs) == 0 {
		return nil, fmt.Errorf("%s: not a Kustomization with spec.healthCheckExprs", path)
	}
	// Strict: a misspelt field would otherwise be dropped silently, as the apiserver would not.
	var checks []kustomize.CustomHealthCheck
	if err := yaml.UnmarshalStrict(ks.Spec.HealthCheckExprs, &checks); err != nil {
		return nil, fmt.Errorf("%s: spec.healthCheckExprs: %w", path, err)
	}
	newReader, err := cel.NewStatusReader(checks)
	if err != nil {
		return nil, err
	}
	// The mapper and the cluster reader only serve to fetch an object by name;
	// ReadStatusForObject is handed the object itself.
	return &celJudge{reader: newReader(nil)}, nil
}

func (j *celJudge) judge(obj *unstructured.Unstructured) Verdict {
	if !j.reader.Supports(obj.GroupVersionKind().GroupKind()) {
		return Verdict{Error: "no healthCheckExprs entry for " + obj.GroupVersionKind().String()}
	}
	res, err := j.reader.ReadStatusForObject(context.Background(), nil, obj.DeepCopy())
	if err != nil {
		return Verdict{Error: err.Error()}
	}
	v := Verdict{Status: res.Status.String(), Message: res.Message}
	if res.Error != nil {
		v.Error = res.Error.Error()
	}
	return v
}
