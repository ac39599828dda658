-- Argo CD health of a RoleBasedGroupScalingAdapter (workloads.x-k8s.io). Lua 5.1.
local hs = {}
if obj.status ~= nil and obj.status.phase == "Bound" then
  hs.status = "Healthy"
  hs.message = "scales role " .. obj.spec.scaleTargetRef.role .. " of " .. obj.spec.scaleTargetRef.name
  return hs
end
for _, c in ipairs((obj.status or {}).conditions or {}) do
  if c.type == "Ready" and c.reason == "InvalidSpec" then
    hs.status = "Degraded"
    hs.message = c.message
    return hs
  end
end
hs.status = "Progressing"
hs.message = "waiting for the target role to exist"
return hs
