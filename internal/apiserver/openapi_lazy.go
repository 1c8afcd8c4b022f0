package apiserver

import (
	"sync"

	restful "github.com/emicklei/go-restful/v3"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/kube-openapi/pkg/builder"
	"k8s.io/kube-openapi/pkg/builder3"
	"k8s.io/kube-openapi/pkg/cached"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/common/restfuladapter"
	"k8s.io/kube-openapi/pkg/handler"
	"k8s.io/kube-openapi/pkg/handler3"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// installLazyOpenAPI serves /openapi/v2 and /openapi/v3 as upstream's
// PrepareRun does (routes.OpenAPI.InstallV2 and InstallV3: the same builders,
// configs and handlers), except that each document is built on its first
// request instead of at start-up. Building them takes part of the start-up
// time and holds about 17 MB that an API server whose clients never ask for
// its schema (controllers, nodes, typed clients) does not need; the first
// `kubectl apply` or `kubectl explain` pays for it instead. Managed fields
// (server-side apply) use their own models, built at start-up as before.
//
// The caller sets Config.SkipOpenAPIInstallation so that PrepareRun does not
// install the eager versions.
//
// The documents are built one at a time, as upstream's start-up builds them:
// the builders share the definitions the configs return, and builder3 edits
// their maps (it deletes each schema's embedded v2 schema), so two
// documents built at once (kubectl fetches several group versions in
// parallel) crashed the server with concurrent map writes.
func installLazyOpenAPI(gs *genericapiserver.GenericAPIServer, v2 *common.Config, v3 *common.OpenAPIV3Config) error {
	container, mux := gs.Handler.GoRestfulContainer, gs.Handler.NonGoRestfulMux
	var building sync.Mutex
	if v2 != nil {
		v2spec := cached.Once(cached.Func(func() (*spec.Swagger, string, error) {
			building.Lock()
			defer building.Unlock()
			s, err := builder.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices(container.RegisteredWebServices()), v2)
			if err != nil {
				return nil, "", err
			}
			s.Definitions = handler.PruneDefaults(s.Definitions)
			return s, "v2", nil
		}))
		gs.OpenAPIVersionedService = handler.NewOpenAPIServiceLazy(v2spec)
		gs.OpenAPIVersionedService.RegisterOpenAPIVersionedService("/openapi/v2", mux)
	}
	if v3 != nil {
		svc := handler3.NewOpenAPIService()
		if err := svc.RegisterOpenAPIV3VersionedService("/openapi/v3", mux); err != nil {
			return err
		}
		for gv, ws := range webServicesByGroupVersion(container) {
			svc.UpdateGroupVersionLazy(gv, cached.Once(cached.Func(func() (*spec3.OpenAPI, string, error) {
				building.Lock()
				defer building.Unlock()
				s, err := builder3.BuildOpenAPISpecFromRoutes(restfuladapter.AdaptWebServices([]*restful.WebService{ws}), v3)
				if err != nil {
					return nil, "", err
				}
				return s, gv, nil
			})))
		}
		gs.OpenAPIV3VersionedService = svc
	}
	return nil
}

// webServicesByGroupVersion keys the container's web services by their root
// path without the leading "/" ("api/v1", "apis/apps/v1"), as InstallV3 does.
func webServicesByGroupVersion(c *restful.Container) map[string]*restful.WebService {
	out := map[string]*restful.WebService{}
	for _, ws := range c.RegisteredWebServices() {
		out[ws.RootPath()[1:]] = ws
	}
	return out
}
