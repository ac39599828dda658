-- Argo CD health of a RoleBasedGroupSet (workloads.x-k8s.io). Lua 5.1.
local hs = {}
local ready = nil
for _, c in ipairs((obj.status or {}).conditions or {}) do
  if c.type == "Ready" then ready = c end
end
if ready ~= nil and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = ready.message
  return hs
end
if obj.status == nil or obj.status.observedGeneration == nil
    or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Progressing"
end
hs.message = tostring(obj.status.readyReplicas or 0) .. "/" .. tostring(obj.spec.replicas or 1) .. " groups ready"
return hs
