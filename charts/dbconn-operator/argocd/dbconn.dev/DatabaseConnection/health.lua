-- Argo CD health check for dbconn.dev/DatabaseConnection, laid out as in Argo CD's
-- resource_customizations (health_test.yaml and testdata/ beside it). Install it as argocd-cm key
-- resource.customizations.health.dbconn.dev_DatabaseConnection (see the chart's README).
-- Written for Argo CD's Lua 5.1 (gopher-lua) with only its base, table, package and os
-- libraries; tests/gitops.rs runs it that way, over health_test.yaml and over objects the
-- operator wrote.
--
--   no status yet, or status.observedGeneration < metadata.generation   Progressing
--   Ready=True                                                           Healthy
--   Stalled=True (needs a person: wrong password, bad spec, missing key) Degraded, Ready's message
--   Reconciling=True (waiting for a Secret, retrying a server)           Progressing
--   spec.suspend (no Ready condition; Reachable says how to resume)      Suspended
--   Ready=False otherwise                                                Degraded
--   no Ready condition yet, or Ready=Unknown                             Progressing
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- A condition's message, or a fallback when it has none.
local function message_of(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report the connection's status"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
local stalled = condition(status.conditions, "Stalled")
local reconciling = condition(status.conditions, "Reconciling")

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message_of(ready, "Connected")
  return hs
end
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message_of(ready, message_of(stalled, "The connection needs a change to its spec or Secret"))
  return hs
end
if is_true(reconciling) then
  hs.status = "Progressing"
  local msg = message_of(ready, nil)
  local progress = message_of(reconciling, nil)
  if msg == nil then
    msg = progress or "Reconciling"
  elseif progress ~= nil and progress ~= msg then
    msg = msg .. " " .. progress
  end
  hs.message = msg
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  local reachable = condition(status.conditions, "Reachable")
  hs.message = message_of(ready, message_of(reachable, "Probes are suspended by spec.suspend"))
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = message_of(ready, "The connection is not ready")
  return hs
end
hs.status = "Progressing"
hs.message = message_of(ready, "Waiting for the Ready condition")
return hs
