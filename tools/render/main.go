// Command render renders a Helm chart the way `helm template` does, without helm.
//
// Helm cannot be installed on the CI machine, so this uses the same engine helm uses (Go
// text/template + sprig) and the helm extras our chart relies on: include, tpl, toYaml, fromYaml,
// required, fail, .Files.Get, .Release, .Chart, .Capabilities.KubeVersion (checked against
// Chart.yaml's kubeVersion), values merged from
// values.yaml and -f files (later wins, null deletes), "<no value>" blanked as helm does, and
// manifests sorted in helm's install order. Build offline from Debian's Go sources:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o build/render ./tools/render
//
// Usage: render -chart DIR [-f values.yaml]... [-name N] [-namespace NS] [-include-crds]
// [-print-values] [-notes]
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is helm's .Files: every chart file outside templates/, by path relative to the chart.
type Files map[string][]byte

// Get returns a file's content, or "" when there is none (as helm does).
func (f Files) Get(name string) string { return string(f[name]) }

// Lines returns a file's lines.
func (f Files) Lines(name string) []string {
	s := strings.TrimSuffix(string(f[name]), "\n")
	if s == "" {
		return []string{}
	}
	return strings.Split(s, "\n")
}

// installOrder is helm's releaseutil.InstallOrder: kinds are emitted in this order.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

type manifest struct {
	source  string
	kind    string
	content string
}

func main() {
	var values valueFiles
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "nodeprobe", "release name")
	namespace := flag.String("namespace", "nodeprobe", "release namespace")
	kubeVersion := flag.String("kube-version", "v1.28.0", "Kubernetes version for .Capabilities")
	includeCRDs := flag.Bool("include-crds", false, "emit crds/*.yaml first, as helm --include-crds")
	printValues := flag.Bool("print-values", false, "print the merged values as JSON and exit")
	notes := flag.Bool("notes", false, "render templates/NOTES.txt instead of the manifests")
	flag.Var(&values, "f", "values file (repeatable; later files win)")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("-chart is required"))
	}
	out, err := run(*chartDir, values, options{
		name: *name, namespace: *namespace, kubeVersion: *kubeVersion,
		includeCRDs: *includeCRDs, printValues: *printValues, notes: *notes,
	})
	if err != nil {
		fail(err)
	}
	fmt.Print(out)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "render: %v\n", err)
	os.Exit(1)
}

type options struct {
	name, namespace, kubeVersion    string
	includeCRDs, printValues, notes bool
}

func run(chartDir string, valueFiles []string, opt options) (string, error) {
	chart, err := readYAMLMap(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	vals, err := readYAMLMap(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		override, err := readYAMLMap(f)
		if err != nil {
			return "", err
		}
		vals = mergeValues(vals, override)
	}
	if opt.printValues {
		b, err := json.MarshalIndent(vals, "", "  ")
		return string(b) + "\n", err
	}
	chartName, _ := chart["name"].(string)
	if chartName == "" {
		return "", errors.New("Chart.yaml: name is missing")
	}
	if err := checkKubeVersion(chart, opt.kubeVersion); err != nil {
		return "", err
	}
	templates, files, err := readChart(chartDir, chartName)
	if err != nil {
		return "", err
	}
	major, minor := splitVersion(opt.kubeVersion)
	top := map[string]interface{}{
		"Values": vals,
		"Chart":  capitalizeKeys(chart),
		"Release": map[string]interface{}{
			"Name": opt.name, "Namespace": opt.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": opt.kubeVersion, "GitVersion": opt.kubeVersion,
				"Major": major, "Minor": minor,
			},
			"APIVersions": []string{},
		},
		"Files": files,
	}
	rendered, err := renderAll(templates, chartName, top)
	if err != nil {
		return "", err
	}
	notesName := chartName + "/templates/NOTES.txt"
	if opt.notes {
		return rendered[notesName], nil
	}
	var out strings.Builder
	if opt.includeCRDs {
		if err := writeCRDs(&out, chartDir, chartName); err != nil {
			return "", err
		}
	}
	for _, m := range sortManifests(rendered, notesName) {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.source, m.content)
	}
	return out.String(), nil
}

// readChart loads templates/ (by helm's template names) and every other file as .Files.
func readChart(chartDir, chartName string) (map[string]string, Files, error) {
	templates := map[string]string{}
	files := Files{}
	err := filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, err := filepath.Rel(chartDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[chartName+"/"+rel] = string(b)
		} else {
			files[rel] = b
		}
		return nil
	})
	return templates, files, err
}

func renderAll(templates map[string]string, chartName string, top map[string]interface{}) (
	map[string]string, error) {
	root := template.New("gotpl")
	includedNames := map[string]int{}
	funcs := funcMap(root, includedNames)
	root.Funcs(funcs).Option("missingkey=zero")
	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := root.New(n).Parse(templates[n]); err != nil {
			return nil, fmt.Errorf("parse %s: %w", n, err)
		}
	}
	out := map[string]string{}
	for _, n := range names {
		if strings.HasPrefix(path.Base(n), "_") {
			continue // partials define templates; helm never emits them
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{
			"Name": n, "BasePath": chartName + "/templates",
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return nil, fmt.Errorf("render %s: %w", n, err)
		}
		out[n] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

// funcMap is sprig plus helm's own functions, with helm's removals (env, expandenv).
func funcMap(root *template.Template, includedNames map[string]int) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = func(v interface{}) string { b, _ := json.Marshal(v); return string(b) }
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // as `helm template`: no cluster to ask
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		if includedNames[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedNames[name]++
		defer func() { includedNames[name]-- }()
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		if _, err := t.New("tpl").Parse(text); err != nil {
			return "", fmt.Errorf("tpl: %w", err)
		}
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, "tpl", data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	return f
}

// toYAML matches helm: JSON first (so keys sort and numbers read as JSON), then YAML.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	if err := yaml.Unmarshal(j, &generic); err != nil {
		return ""
	}
	b, err := yaml.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

func fromYAML(s string) map[string]interface{} {
	var m map[string]interface{}
	if err := yamlToJSONValue([]byte(s), &m); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	return m
}

// yamlToJSONValue decodes YAML the way helm does (sigs.k8s.io/yaml): via JSON, so maps have
// string keys and every number is a float64.
func yamlToJSONValue(b []byte, out interface{}) error {
	var raw interface{}
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return err
	}
	j, err := json.Marshal(stringKeys(raw))
	if err != nil {
		return err
	}
	return json.Unmarshal(j, out)
}

func stringKeys(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = stringKeys(val)
		}
		return m
	case []interface{}:
		for i := range t {
			t[i] = stringKeys(t[i])
		}
		return t
	}
	return v
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yamlToJSONValue(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// mergeValues merges override into base as helm merges -f files: maps merge key by key,
// anything else replaces, and a null removes the key.
func mergeValues(base, override map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(base))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range override {
		if v == nil {
			delete(out, k)
			continue
		}
		if vm, ok := v.(map[string]interface{}); ok {
			if bm, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeValues(bm, vm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func capitalizeKeys(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m))
	for k, v := range m {
		if k != "" {
			out[strings.ToUpper(k[:1])+k[1:]] = v
		}
	}
	return out
}

// checkKubeVersion refuses, as helm does, a Kubernetes version outside Chart.yaml's kubeVersion.
func checkKubeVersion(chart map[string]interface{}, kubeVersion string) error {
	constraint, _ := chart["kubeVersion"].(string)
	if constraint == "" {
		return nil
	}
	c, err := semver.NewConstraint(constraint)
	if err != nil {
		return fmt.Errorf("Chart.yaml: kubeVersion %q: %w", constraint, err)
	}
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return fmt.Errorf("-kube-version %q: %w", kubeVersion, err)
	}
	if !c.Check(v) {
		return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
			constraint, kubeVersion)
	}
	return nil
}

func splitVersion(v string) (string, string) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 {
		return parts[0], "0"
	}
	return parts[0], parts[1]
}

func writeCRDs(out *strings.Builder, chartDir, chartName string) error {
	paths, err := filepath.Glob(filepath.Join(chartDir, "crds", "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		src := chartName + "/crds/" + filepath.Base(p)
		fmt.Fprintf(out, "---\n# Source: %s\n%s\n", src, strings.TrimSpace(string(b)))
	}
	return nil
}

// sortManifests splits each rendered file into documents, drops empty ones and sorts them
// by kind in helm's install order (files in name order within one kind).
func sortManifests(rendered map[string]string, skip string) []manifest {
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		if n != skip {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var docs []manifest
	for _, n := range names {
		for _, doc := range splitDocs(rendered[n]) {
			var head struct {
				Kind string `yaml:"kind"`
			}
			_ = yaml.Unmarshal([]byte(doc), &head)
			docs = append(docs, manifest{source: n, kind: head.Kind, content: doc})
		}
	}
	rank := func(kind string) int {
		for i, k := range installOrder {
			if k == kind {
				return i
			}
		}
		return len(installOrder)
	}
	sort.SliceStable(docs, func(i, j int) bool {
		ri, rj := rank(docs[i].kind), rank(docs[j].kind)
		if ri != rj {
			return ri < rj
		}
		if ri == len(installOrder) {
			return docs[i].kind < docs[j].kind
		}
		return false
	})
	return docs
}

func splitDocs(s string) []string {
	var docs []string
	for _, part := range strings.Split("\n"+s, "\n---") {
		trimmed := strings.TrimSpace(part)
		if trimmed == "" || isOnlyComments(trimmed) {
			continue
		}
		docs = append(docs, trimmed)
	}
	return docs
}

func isOnlyComments(s string) bool {
	for _, line := range strings.Split(s, "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}
