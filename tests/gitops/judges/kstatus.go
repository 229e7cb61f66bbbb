package main

import (
	fluxstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// kstatus is status.Compute of sigs.k8s.io/cli-utils.
func kstatus(obj *unstructured.Unstructured) Verdict {
	res, err := status.Compute(obj.DeepCopy())
	if err != nil {
		return Verdict{Error: err.Error()}
	}
	return Verdict{Status: res.Status.String(), Message: res.Message}
}

// fluxKStatus is status.Compute of Flux's fork, which kustomize-controller's health checks use
// for kinds without healthCheckExprs.
func fluxKStatus(obj *unstructured.Unstructured) Verdict {
	res, err := fluxstatus.Compute(obj.DeepCopy())
	if err != nil {
		return Verdict{Error: err.Error()}
	}
	return Verdict{Status: res.Status.String(), Message: res.Message}
}
